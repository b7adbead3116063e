// PEFT's lora.Conv1d and lora.Conv3d (tuners/lora/layer.py, _ConvNd; DoRA: dora.py's
// DoraConv1dLayer / DoraConv3dLayer) on nn::Conv1d / nn::Conv3d. Per adapter
//   lora_A = ConvNd(in, r, base kernel, base stride, base padding, bias=False)   (dilation 1, groups 1:
//            PEFT passes neither, so a dilated base gives a LoRA output of another size and forward
//            refuses it, naming the dilation)
//   lora_B = ConvNd(r, out, kernel 1, stride 1, groups = base groups, bias = lora_bias)
// in the lora_A / lora_B ModuleDicts, so the state-dict and adapter-file keys are PEFT's. r must be
// divisible by the base's groups. y = base(x) + s·B(A(dropout(x))); DoRA rescales per output
// channel. Merging (and get_delta_weight) is refused for groups > 1, as in PEFT. lora.Conv2d keeps
// its own class (adapters/lora_conv2d.h) with its fused 1×1 path; this one composes conv ops.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "adapters/lora_layer.h"
#include "layers/conv_nd.h"

namespace peft {

class LoraConvNd : public LoraLayer {
 public:
  // `base` must be an nn::ConvNd (Conv1d or Conv3d).
  LoraConvNd(std::shared_ptr<nn::Module> base, const std::string& adapter_name, const LoraLayerSettings& settings);
  // "lora.Conv1d" or "lora.Conv3d".
  std::string type_name() const override;
  Tensor forward(const Tensor& x) override;
  void update_layer(const std::string& name, const LoraLayerSettings& settings) override;
  // s·(B.view(out, r)·A.view(r, -1)).view(W.shape) (groups 1 only); DoRA's rescaling is applied by
  // LoraLayer::merge_change.
  Tensor get_delta_weight(const std::string& name) const override;
  // Refused for groups > 1 ("Merging is not supported for _ConvNd layers with groups > 1!").
  void merge(bool safe_merge = false, const std::vector<std::string>& adapter_names = {}) override;
  void unmerge() override;

 private:
  std::shared_ptr<nn::ConvNd> base_conv() const;
  // B(A(h)) (B's bias included), checked against the shape of `result`.
  Tensor lora_branch(const Tensor& h, const std::string& name, const Tensor& result);
  // PEFT's _DoraConvNdVariant.forward: `result` is the output so far.
  Tensor dora_forward(const Tensor& x, const std::string& name, const Tensor& result);
  // B·A in W's shape as PEFT's DoRA computes it: mm(B.view(-1, r), A.view(r, -1)).reshape(W.shape).
  Tensor dora_lora_weight(const std::string& name) const;
};

}  // namespace peft
