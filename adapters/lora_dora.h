// DoRA (weight-decomposed LoRA; PEFT's tuners/lora/dora.py and the Dora*Variant classes of
// variants.py): the magnitude vector of one adapter and the arithmetic around it. The vector
// is parameter "weight" of a small DoraLayer module kept in the LoRA layer's
// "lora_magnitude_vector" ModuleDict, so its state-dict key is
// "<layer>.lora_magnitude_vector.<adapter>.weight" as in PEFT (PEFT's adapter files drop the
// ".weight": see adapters/peft_model.cpp). The norm ||W + s·ΔW|| is a constant for autograd
// (detached; DoRA paper §4.3), so only the magnitude, A and B receive gradients through it.
#pragma once
#include <string>

#include "layers/module.h"

namespace peft {

class DoraLayer : public nn::Module {
 public:
  PEFT_MODULE_CLONE(DoraLayer)
  // Decides the axes of the norm and the shape of the magnitude (PEFT's DoraLinearLayer,
  // DoraEmbeddingLayer, DoraConv1dLayer / DoraConv2dLayer / DoraConv3dLayer).
  enum class Kind { Linear, Embedding, Conv2d, Conv1d, Conv3d };
  explicit DoraLayer(Kind kind) : kind_(kind) {}
  std::string type_name() const override;
  Kind kind() const { return kind_; }

  // ||W + s·lora_weight|| as PEFT's get_weight_norm, with lora_weight = B·A in each kind's layout:
  //   Linear    W (out, in),           lora_weight (out, in)        → (out)          norm of each row
  //   Embedding W (num, dim),          lora_weight (dim, num)       → (dim)          norm of each row of Wᵀ
  //   Conv2d    W (out, in/g, kh, kw), lora_weight shaped like W    → (1, out, 1, 1) norm per output channel
  //   Conv1d / Conv3d: as Conv2d with W 3-D / 5-D              → (1, out, 1) / (1, out, 1, 1, 1)
  Tensor weight_norm(const Tensor& W, const Tensor& lora_weight, double scaling) const;
  // PEFT's update_layer: the magnitude ("weight", trainable) starts at weight_norm(W, lora_weight, s).
  void init(const Tensor& W, const Tensor& lora_weight, double scaling);
  Tensor& magnitude() { return param("weight"); }
  // m / ||W + s·lora_weight|| (norm detached), shaped to broadcast over the layer output:
  // (out) for Linear, (dim) for Embedding, (1, out, 1, ...) for a convolution.
  Tensor scale(const Tensor& W, const Tensor& lora_weight, double scaling);

  // Merging (Dora*Variant.merge_* / unmerge), delta = get_delta_weight (scaling included, W's shape):
  // merged = dora_factor·(W + delta) with dora_factor = m / ||W + delta||. That norm is cached here,
  // because unmerge cannot recover it from the merged weight: W = merged / dora_factor − delta.
  Tensor merged_weight(const Tensor& W, const Tensor& delta);
  Tensor unmerged_weight(const Tensor& W_merged, const Tensor& delta);

 private:
  // dora_factor shaped to scale W: (out, 1), (1, dim) or (out, 1, ...) for a convolution.
  Tensor factor_for_weight(const Tensor& factor) const;
  Kind kind_;
  Tensor cached_norm_;  // set by merged_weight, consumed by unmerged_weight
};

// LoraLayer::merge / unmerge add or subtract a change of W per adapter. For a DoRA adapter
// that change is not the LoRA delta but dora_factor·(W + Δ) − W when merging, and
// W − (W / dora_factor − Δ) when unmerging.
enum class MergePhase { None, Merging, Unmerging };

// The change of W that merging (or, negated, unmerging) applies for a DoRA adapter in `phase`;
// `delta` itself when phase is None. W is the base weight as it is now.
Tensor dora_effective_delta(MergePhase phase, DoraLayer& dora, const Tensor& W, const Tensor& delta);

}  // namespace peft
