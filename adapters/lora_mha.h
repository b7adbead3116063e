// PEFT's lora.MultiheadAttention: LoRA on both projections of an nn::MultiheadAttention. lora_A
// (r, E) / lora_B (3E, r) adapt in_proj_weight and live on this layer; out_proj is wrapped in a
// lora.Linear inside the base layer, so the adapter keys are PEFT's
// "<mha>.lora_A.weight" and "<mha>.base_layer.out_proj.lora_A.weight".
//
// The forward computes with merged weights, as PEFT does (torch's attention never calls
// out_proj's forward): in_proj_weight + s·B·A, and out_proj.weight + 2·s_o·B_o·A_o. The factor 2
// is PEFT 0.21.2's: its merge writes W + Δ into out_proj's weight and then lets the wrapped
// lora.Linear merge Δ once more, in forward (where the gradient sees Δ once) and in
// merge_adapter / merge_and_unload alike. Reproduced so PEFT's adapters give PEFT's outputs.
// Refused by name: DoRA and lora_bias (PEFT refuses DoRA; its merge ignores lora_B's bias), the
// data-driven inits, mixed adapter batches.
#pragma once
#include "adapters/lora_layer.h"

namespace peft {

class LoraMultiheadAttention : public LoraLayer {
 public:
  LoraMultiheadAttention(std::shared_ptr<nn::Module> base, const std::string& adapter_name,
                         const LoraLayerSettings& settings);
  std::string type_name() const override { return "lora.MultiheadAttention"; }
  Tensor forward(const Tensor& x) override;
  // Adds the adapter here and to the wrapped out_proj.
  void update_layer(const std::string& name, const LoraLayerSettings& settings) override;
  void delete_adapter(const std::string& name) override;
  // s·B·A for in_proj_weight (3E, E).
  Tensor get_delta_weight(const std::string& name) const override;
  Tensor& merge_target() override;
  void merge(bool safe_merge = false, const std::vector<std::string>& adapter_names = {}) override;
  void unmerge() override;
  std::shared_ptr<LoraLinear> out_proj() const;

 private:
  void add_own_adapter(const std::string& name, const LoraLayerSettings& settings);
};

}  // namespace peft
