// PEFT's lora.Conv2d (tuners/lora/layer.py, _ConvNd): per adapter
//   lora_A = Conv2d(in, r, base kernel, base stride, base padding, bias=False)   (dilation 1, groups 1: PEFT
//            passes neither, so a dilated k×k base gives a LoRA output of another size and forward refuses it)
//   lora_B = Conv2d(r, out, 1×1, stride 1, groups = base groups, bias = lora_bias)
// kept in the lora_A / lora_B ModuleDicts ("<layer>.lora_A.<adapter>.weight"). r must be divisible
// by the base's groups. y = base(x) + s·B(A(dropout(x))). For a 1×1 base with stride 1, no
// padding and groups 1, the first plain adapter runs with the base through the fused lora_linear
// op on the channel dimension (DESIGN.md decision 2); other cases compose conv2d ops. Merging is
// refused for groups > 1, as in PEFT. DoRA (use_dora) scales per output channel.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "adapters/lora_layer.h"
#include "layers/conv.h"

namespace peft {

class LoraConv2d : public LoraLayer {
 public:
  LoraConv2d(std::shared_ptr<nn::Module> base, const std::string& adapter_name, const LoraLayerSettings& settings);
  std::string type_name() const override { return "lora.Conv2d"; }
  Tensor forward(const Tensor& x) override;
  void update_layer(const std::string& name, const LoraLayerSettings& settings) override;
  // s·(B.view(out, r)·A.view(r, in·kh·kw)).view(W.shape) (groups 1 only);
  // DoRA's rescaling is applied by LoraLayer::merge_change.
  Tensor get_delta_weight(const std::string& name) const override;
  // Refused for groups > 1 ("Merging is not supported for _ConvNd layers with groups > 1!").
  void merge(bool safe_merge = false, const std::vector<std::string>& adapter_names = {}) override;
  void unmerge() override;

 private:
  std::shared_ptr<nn::Conv2d> base_conv() const;
  // Whether (x, first adapter) can take the fused 1×1 path.
  bool fused_1x1(const Tensor& x, const std::string& first) const;
  // base(x) + s·B(A(dropout(x))) for a 1×1 base through lora_linear on NHWC rows.
  Tensor fused_forward(const Tensor& x, const std::string& name);
  // B(A(h)) (B's bias included), checked against the shape of `result`.
  Tensor lora_branch(const Tensor& h, const std::string& name, const Tensor& result);
  // PEFT's _DoraConvNdVariant.forward: `result` is the output so far.
  Tensor dora_forward(const Tensor& x, const std::string& name, const Tensor& result);
  // B·A in W's shape as PEFT's DoRA computes it: mm(B.view(-1, r), A.view(r, -1)).reshape(W.shape).
  Tensor dora_lora_weight(const std::string& name) const;
};

}  // namespace peft
