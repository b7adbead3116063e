// adapters/target_mapping.h — PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: the
// target_modules a LoraConfig gets when it names none and the model is a transformers model
// (PEFT's _prepare_adapter_config). A table, like the dispatch registry.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "adapters/lora_config.h"

namespace peft {

// PEFT's default LoRA targets for a config.json model_type ("llama" → {"q_proj", "v_proj"}), or
// nullopt when PEFT has none (it then asks for target_modules).
std::optional<std::vector<std::string>> default_lora_target_modules(const std::string& model_type);

// `config` with target_modules filled from the table when it has none and `model` is a
// transformers model (nn::hf::PretrainedModel: decoders and T5); unchanged otherwise. A transformers model whose
// model_type has no entry gets PEFT's error ("Please specify `target_modules` in `peft_config`").
LoraConfig with_default_target_modules(const nn::Module& model, LoraConfig config);

}  // namespace peft
