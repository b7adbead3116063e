// Hot-swapping (PEFT's peft/utils/hotswap.py): an adapter that is already loaded gets another
// adapter's weights without being re-created, so whoever holds its tensors (a captured CUDA graph,
// an optimizer, a pointer taken for a kernel) keeps working: every tensor is written in place
// (same storage, same data pointer), never replaced. The adapter keeps its name; its scaling
// becomes the new adapter's. A smaller rank is zero-padded into the existing tensors; to swap in
// adapters of several ranks, first pad the loaded one to the largest with
// prepare_model_for_compiled_hotswap. Every check runs before the first write, so a refused swap
// leaves the model as it was.
#pragma once
#include <optional>
#include <string>

#include "adapters/lora_config.h"
#include "core/tensor.h"

namespace peft {

class PeftModel;

// PEFT's prepare_model_for_compiled_hotswap(model, target_rank=...): every lora.Linear and
// lora.Conv2d adapter's lora_A and lora_B are zero-padded to target_rank (rows of A, columns of B;
// a grouped Conv2d's A per group block), which leaves the output unchanged; the scaling stays the
// adapter's own. Call it after loading the first adapter and before anything captures the tensors
// (this replaces them). Without target_rank it only checks that the model has LoRA layers. PEFT's
// errors: no LoRA layer, a rank above target_rank, a target rank the groups do not divide. Other
// LoRA layer types (user-registered) are refused by name; Embedding layers are skipped, as PEFT
// skips them.
void prepare_model_for_compiled_hotswap(PeftModel& model, std::optional<int64_t> target_rank = std::nullopt);

// PEFT's check_hotswap_configs_compatible: use_rslora, lora_dropout, alpha_pattern and use_dora
// must agree ("Configs are incompatible: for lora_dropout, 0.0 != 0.1"); r and lora_alpha may differ.
void check_hotswap_configs_compatible(const LoraConfig& loaded, const LoraConfig& incoming);

// PEFT's hotswap_adapter_from_state_dict: `state` has the model's own keys, adapter name included
// ("base_model.model.lin0.lora_A.default.weight"). Keys the model lacks: PEFT's "Hot swapping the
// adapter did not succeed, unexpected keys found: ..." error; a key that is not one of this
// adapter's LoRA tensors, a shape that differs in anything but the rank dimension or has a larger
// rank, and a merged adapter are refused too. This adapter's LoRA tensors the state lacks become
// zero. Each touched layer's scaling is recomputed from `config` (r / lora_alpha, rank_pattern /
// alpha_pattern keys matched against the full key as PEFT does, use_rslora).
void hotswap_adapter_from_state_dict(PeftModel& model, const NamedTensors& state, const std::string& adapter_name,
                                     const LoraConfig& config);

// PEFT's hotswap_adapter: reads dir/adapter_config.json and dir/adapter_model.safetensors (as
// PeftModel.save_pretrained writes them), checks the config against the active adapter's, inserts
// `adapter_name` into the keys and swaps. Tensors are converted to each target's dtype and device.
void hotswap_adapter(PeftModel& model, const std::string& dir, const std::string& adapter_name);

}  // namespace peft
