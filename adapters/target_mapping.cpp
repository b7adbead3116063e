#include "adapters/target_mapping.h"

#include <map>

#include "core/error.h"
#include "layers/hf/pretrained.h"

namespace peft {

std::optional<std::vector<std::string>> default_lora_target_modules(const std::string& model_type) {
  // PEFT 0.21's table (src/peft/utils/constants.py), entry for entry.
  static const std::map<std::string, std::vector<std::string>> table = {
      {"t5", {"q", "v"}},
      {"mt5", {"q", "v"}},
      {"bart", {"q_proj", "v_proj"}},
      {"gpt2", {"c_attn"}},
      {"bloom", {"query_key_value"}},
      {"blip-2", {"q", "v", "q_proj", "v_proj"}},
      {"opt", {"q_proj", "v_proj"}},
      {"gptj", {"q_proj", "v_proj"}},
      {"gpt_neox", {"query_key_value"}},
      {"gpt_neo", {"q_proj", "v_proj"}},
      {"bert", {"query", "value"}},
      {"roberta", {"query", "value"}},
      {"xlm-roberta", {"query", "value"}},
      {"electra", {"query", "value"}},
      {"deberta-v2", {"query_proj", "value_proj"}},
      {"deberta", {"in_proj"}},
      {"layoutlm", {"query", "value"}},
      {"llama", {"q_proj", "v_proj"}},
      {"llama4", {"q_proj", "v_proj"}},
      {"chatglm", {"query_key_value"}},
      {"gpt_bigcode", {"c_attn"}},
      {"mpt", {"Wqkv"}},
      {"RefinedWebModel", {"query_key_value"}},
      {"RefinedWeb", {"query_key_value"}},
      {"falcon", {"query_key_value"}},
      {"btlm", {"c_proj", "c_attn"}},
      {"codegen", {"qkv_proj"}},
      {"mistral", {"q_proj", "v_proj"}},
      {"mixtral", {"q_proj", "v_proj"}},
      {"stablelm", {"q_proj", "v_proj"}},
      {"phi", {"q_proj", "v_proj", "fc1", "fc2"}},
      {"gemma", {"q_proj", "v_proj"}},
      {"gemma2", {"q_proj", "v_proj"}},
      {"gemma3_text", {"q_proj", "v_proj"}},
      {"qwen2", {"q_proj", "v_proj"}},
      {"qwen3", {"q_proj", "v_proj"}},
  };
  auto it = table.find(model_type);
  if (it == table.end()) return std::nullopt;
  return it->second;
}

LoraConfig with_default_target_modules(const nn::Module& model, LoraConfig config) {
  if (config.target_modules.is_set()) return config;
  const auto* lm = dynamic_cast<const nn::hf::PretrainedModel*>(&model);
  if (!lm) return config;
  auto targets = default_lora_target_modules(lm->model_type());
  PEFT_CHECK(targets.has_value(), "Please specify `target_modules` in `peft_config` (PEFT has no default targets for "
             "model_type \"", lm->model_type(), "\")");
  config.target_modules = *targets;
  return config;
}

}  // namespace peft
