// adapters/target_mapping.h — PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: the
// target_modules a LoraConfig gets when it names none and the model is a transformers model
// (PEFT's _prepare_adapter_config). A table, like the dispatch registry. Also what the rest of
// PEFT's inject_adapter does to target_modules before matching: "all-linear" resolved to names and
// long lists condensed to suffixes; the adapter's stored and saved config holds the result.
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

// PEFT's _maybe_include_all_linear_layers: the names "all-linear" stands for on `model`, in
// named_modules order. Every Linear, and every LoRA layer whose type name holds "Linear" (a second
// adapter targets the existing lora.Linear); never a module inside a LoRA layer; for a transformers
// model (nn::hf::PretrainedModel) not its output layer (transformers' get_output_embeddings(): the
// child "lm_head"; without one and task_type "SEQ_CLS", the child "score" or else "classifier").
// A custom model keeps its last Linear. Empty when the model has no Linear.
std::vector<std::string> all_linear_module_names(nn::Module& model, const LoraConfig& config);

// PEFT's _find_minimal_target_modules: the fewest name suffixes that match every target and none of
// `other_names` (sorted), or the targets themselves when no suffix separates them.
std::vector<std::string> find_minimal_target_modules(const std::vector<std::string>& targets,
                                                     const std::vector<std::string>& other_names);

// The target_modules get_peft_model ends up with (and saves): "all-linear" replaced by
// all_linear_module_names, then a list of >= kMinTargetModulesForOptimization names condensed to
// suffixes when that makes it shorter (PEFT's inject_adapter does both before matching). The config
// is validated first, so "all-linear" keeps the string rules (no layers_to_transform).
inline constexpr size_t kMinTargetModulesForOptimization = 20;  // PEFT's MIN_TARGET_MODULES_FOR_OPTIMIZATION
LoraConfig with_resolved_target_modules(nn::Module& model, LoraConfig config);

}  // namespace peft
