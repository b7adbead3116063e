// LoraLayer: the base of every LoRA layer, built-in or user-written. It owns the wrapped
// `base_layer` and PEFT's per-adapter containers (lora_dropout, lora_A, lora_B,
// lora_embedding_A, lora_embedding_B, lora_magnitude_vector), the per-adapter rank and
// scaling, and the active / disabled / merged state. A subclass adds its parameters in
// update_layer() under names starting with "lora_", computes its output in forward(), and
// implements get_delta_weight() (or merge()/unmerge()) if it can be merged.
#pragma once
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "adapters/lora_config.h"
#include "adapters/lora_dora.h"
#include "layers/container.h"

namespace peft {

class LoraLayer : public nn::Module {
 public:
  LoraLayer(nn::ModulePtr base_layer);

  nn::ModulePtr base_layer() const { return child("base_layer"); }
  // Adds adapter `name` with `settings` (r <= 0 or a duplicate name throw).
  virtual void update_layer(const std::string& name, const LoraLayerSettings& settings) = 0;
  // Removes an adapter's parameters (refused while merged).
  virtual void delete_adapter(const std::string& name);

  // ---- state
  std::vector<std::string> adapter_names() const;
  bool has_adapter(const std::string& name) const { return settings_.count(name) > 0; }
  const LoraLayerSettings& settings(const std::string& name) const;
  double scaling(const std::string& name) const { return settings(name).scaling(); }
  const std::vector<std::string>& active_adapters() const { return active_; }
  // Only adapters this layer has are activated; their parameters become trainable, others frozen
  // (PEFT's set_adapter).
  void set_adapter(const std::vector<std::string>& names);
  bool disabled() const { return disabled_; }
  void enable_adapters(bool enabled) { disabled_ = !enabled; }
  // Hot-swapping (adapters/hotswap.h) writes another adapter's weights into this one's tensors and
  // takes its scaling with them; padding to a target rank gives the tensors rank `r` (the rank the
  // forward and merge reshapes use). lora_alpha is set so that scaling() returns `scaling`.
  void set_scaling(const std::string& name, double scaling, std::optional<int64_t> r = std::nullopt) {
    auto it = settings_.find(name);
    PEFT_CHECK(it != settings_.end(), type_name(), ": no adapter named '", name, "'");
    if (r) it->second.r = *r;
    const double rank = static_cast<double>(it->second.r);
    it->second.lora_alpha = scaling * (it->second.use_rslora ? std::sqrt(rank) : rank);
  }
  const std::vector<std::string>& merged_adapters() const { return merged_; }
  bool merged() const { return !merged_.empty(); }

  // ---- merging (PEFT semantics). safe_merge checks the result for NaN/Inf first.
  // Default implementation: base weight += get_delta_weight(name) for every adapter given
  // (default: the active ones not yet merged).
  virtual void merge(bool safe_merge = false, const std::vector<std::string>& adapter_names = {});
  virtual void unmerge();
  // Delta of the base weight for one adapter, in the base weight's shape.
  virtual Tensor get_delta_weight(const std::string& name) const;
  // The change merging (phase Merging) or unmerging (Unmerging) adapter `name` makes to
  // merge_target(): get_delta_weight(), rescaled by the magnitude vector for a DoRA adapter.
  Tensor merge_change(const std::string& name, MergePhase phase);
  // The base-layer tensor merges modify ("weight" by default).
  virtual Tensor& merge_target();

  // Number of trainable-on-request parameters owned by adapter `name` (for counting).
  std::vector<std::pair<std::string, Tensor>> adapter_parameters(const std::string& name) const;
  // Adapter `name`'s own tensors: every parameter and buffer "lora_*.<name>[.<rest>]", never the
  // base layer's.
  std::vector<Tensor> adapter_tensors(const std::string& name) const;

  // ---- placement (PEFT's _move_adapter_to_device_of_base_layer)
  // The device of the base layer's tensors (its first parameter or buffer); the CPU when it has none.
  Device base_device() const;
  // Moves adapter `name`'s tensors to base_device(), in place (every holder sees the move).
  // Contract for every LoRA layer, built-in or user-registered: the injection pass
  // (get_peft_model, inject_adapter_in_model, add_adapter, load_adapter, from_pretrained,
  // add_weighted_adapter) calls this after update_layer, so a new adapter always ends up where
  // its base layer is. A layer whose update_layer computes with the base's tensors (DoRA's norm)
  // must create its tensors on base_device() itself; the built-in ones do.
  void move_adapter_to_base_device(const std::string& name);

 protected:
  // Records settings and registers nothing; subclasses call this first in update_layer.
  void add_adapter_settings(const std::string& name, const LoraLayerSettings& settings);
  // The containers PEFT creates in LoraLayer.__init__, in its order.
  nn::ModuleDict& dict(const std::string& name) const;
  nn::ParameterDict& param_dict(const std::string& name) const;
  // Adapters that take part in forward: active ones this layer has, in activation order.
  std::vector<std::string> forward_adapters() const;
  // PEFT's mixed-batch forward (adapters/mixed_batch.h): nullopt when no MixedBatchScope is open.
  // Otherwise PEFT's _check_forward_args (length, no merged adapters, no DoRA among the named
  // adapters), then base(x) when adapters are disabled, else base(x) plus, for the rows of each
  // adapter this layer has, adapter_branch(those rows) cast to the result's dtype. Layer forwards
  // call it first: `if (auto r = mixed_batch_forward(x)) return *r;`.
  std::optional<Tensor> mixed_batch_forward(const Tensor& x);
  // One adapter's LoRA branch for some rows (PEFT's lora_B(lora_A(dropout(x)))·scaling with x cast
  // to lora_A's dtype), through the "lora_A" / "lora_B" modules; LoraEmbedding overrides it.
  virtual Tensor adapter_branch(const Tensor& x, const std::string& name);
  // A whole-batch path for mixed_batch_forward (LoraLinear: the lora_multi kernels); nullopt
  // falls back to the per-adapter row groups. `result` is base(x).
  virtual std::optional<Tensor> mixed_batch_multi(const Tensor& x, const Tensor& result,
                                                  const std::vector<std::string>& adapter_names);
  // PEFT's forward preamble: disabled → unmerge (for good, as PEFT) and use the base alone;
  // merged → the base alone; otherwise forward_adapters(). Empty: return base(x).
  std::vector<std::string> prepare_forward();
  // For layers that override merge()/unmerge() (several weights, custom math): record the
  // merge order so merged(), merged_adapters() and the model-level operations stay right.
  void mark_merged(const std::string& name);
  std::string pop_merged();  // the most recent merge (LIFO), throws when none

 private:
  std::map<std::string, LoraLayerSettings> settings_;
  std::vector<std::string> order_;  // adapter insertion order
  std::vector<std::string> active_ = {"default"};
  std::vector<std::string> merged_;
  bool disabled_ = false;
};

// PEFT's lora.Linear: y = base(x) + Σ_active s·B(A(dropout(x))) (+ lora_bias), through the
// fused lora_linear op for the first plain adapter. A DoRA adapter (use_dora) adds
// (f − 1)·(base product) + f·s·B(A(x)) with f = m / ||W + s·B·A|| (adapters/lora_dora.h).
class LoraLinear : public LoraLayer {
 public:
  LoraLinear(std::shared_ptr<nn::Module> base, const std::string& adapter_name, const LoraLayerSettings& settings);
  std::string type_name() const override { return "lora.Linear"; }
  Tensor forward(const Tensor& x) override;
  void update_layer(const std::string& name, const LoraLayerSettings& settings) override;
  // s·B·A (DoRA's rescaling is applied by LoraLayer::merge_change).
  Tensor get_delta_weight(const std::string& name) const override;
  void merge(bool safe_merge = false, const std::vector<std::string>& adapter_names = {}) override;
  void unmerge() override;

 protected:
  // PEFT's mixed batch through lora_multi (one shrink + one expand for every adapter at once).
  std::optional<Tensor> mixed_batch_multi(const Tensor& x, const Tensor& result,
                                          const std::vector<std::string>& adapter_names) override;

 private:
  // PEFT's DoraLinearVariant.forward: `result` is the output so far (base plus earlier adapters).
  Tensor dora_forward(const Tensor& x, const std::string& name, const Tensor& result);
};

}  // namespace peft
