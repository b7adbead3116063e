// LoRA on transformers' Conv1D (GPT-2's c_attn / c_proj / c_fc; layers/hf_conv1d.h). PEFT has no
// class of its own for it: dispatch_default wraps a Conv1D in lora.Linear with fan_in_fan_out=True
// (is_target_conv_1d_layer), so lora_A / lora_B are the usual Linear(in, r) / Linear(r, out) and
// the adapter file keys are lora.Linear's. Only the base weight is transposed, (in, out): the
// delta B·A is transposed before it is merged, and DoRA's norm is taken over Wᵀ + s·B·A.
//
// fan_in_fan_out in the config is PEFT's per-dispatch switch: each new built-in Linear turns it
// off and each new Conv1D turns it on, with a warning when it flips, and the adapter's saved
// config keeps the last value (fan_in_fan_out_after_dispatch).
#pragma once
#include "adapters/lora_layer.h"

namespace peft {

class LoraConv1D : public LoraLayer {
 public:
  LoraConv1D(std::shared_ptr<nn::Module> base, const std::string& adapter_name, const LoraLayerSettings& settings);
  std::string type_name() const override { return "lora.Linear"; }  // PEFT's class for it
  bool fan_in_fan_out() const { return true; }
  Tensor forward(const Tensor& x) override;
  // Refuses init_lora_weights="olora" (PEFT factors the (in, out) weight as if it were (out, in),
  // which gives lora_A / lora_B the wrong shapes); "pissa*" works on Wᵀ and writes the residual back
  // transposed, as PEFT.
  void update_layer(const std::string& name, const LoraLayerSettings& settings) override;
  // (s·B·A)ᵀ: the base weight's (in, out) layout.
  Tensor get_delta_weight(const std::string& name) const override;
  void merge(bool safe_merge = false, const std::vector<std::string>& adapter_names = {}) override;
  void unmerge() override;

 private:
  Tensor dora_forward(const Tensor& x, const std::string& name, const Tensor& result);
};

// The value PEFT's dispatch_default leaves in config.fan_in_fan_out after it built a layer through
// `entry` (the previous value is `fan_in_fan_out`): the built-in Linear entry sets it false and the
// built-in Conv1D entry true, each logging PEFT's warning when that changes it; any other entry
// (custom ones included, which PEFT consults first) leaves it as it is.
bool fan_in_fan_out_after_dispatch(const LoraDispatchEntry& entry, bool fan_in_fan_out);

}  // namespace peft
