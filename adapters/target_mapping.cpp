#include "adapters/target_mapping.h"

#include <algorithm>
#include <map>
#include <set>

#include "adapters/lora_layer.h"
#include "core/error.h"
#include "layers/hf/pretrained.h"
#include "layers/hf_conv1d.h"
#include "layers/linear.h"

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

// ---------------------------------------------------------------- all-linear and condensing

namespace peft {

namespace {
bool is_lora_layer(const nn::Module& m) { return dynamic_cast<const LoraLayer*>(&m) != nullptr; }

// The dotted name under which `target` first appears (PEFT: next(name for name, m in
// named_modules() if m is target)).
std::optional<std::string> name_of(nn::Module& root, const nn::Module* target) {
  for (auto& [name, m] : root.named_modules())
    if (m.get() == target) return name;
  return std::nullopt;
}

// PEFT's generate_suffixes: "a.b.c" → {"c", "b.c", "a.b.c"}.
std::vector<std::string> name_suffixes(const std::string& name) {
  std::vector<std::string> out;
  size_t pos = name.size();
  while (true) {
    const size_t dot = pos == 0 ? std::string::npos : name.rfind('.', pos - 1);
    if (dot == std::string::npos) break;
    out.push_back(name.substr(dot + 1));
    pos = dot;
  }
  out.push_back(name);
  return out;
}

bool ends_with_dotted(const std::string& name, const std::string& suffix) {
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         name[name.size() - suffix.size() - 1] == '.';
}
}  // namespace

std::vector<std::string> all_linear_module_names(nn::Module& model, const LoraConfig& config) {
  const auto modules = model.named_modules();
  std::set<std::string> excluded;
  if (dynamic_cast<const nn::hf::PretrainedModel*>(&model)) {
    // transformers' get_output_embeddings() is getattr(self, "lm_head", None); PEFT names the module
    // by identity, so a LoRA layer already wrapping lm_head is still the output layer.
    if (model.has_child("lm_head")) {
      if (auto n = name_of(model, model.child("lm_head").get())) excluded.insert(*n);
    } else if (config.task_type && *config.task_type == "SEQ_CLS") {
      for (const char* head : {"score", "classifier"})  // PEFT's SEQ_CLS_HEAD_NAMES, in order
        if (model.has_child(head)) {
          if (auto n = name_of(model, model.child(head).get())) excluded.insert(*n);
          break;
        }
    }
  }
  // No LoRA on LoRA: nothing inside an existing LoRA layer (its base_layer, lora_A, ...).
  std::vector<std::string> lora_prefixes;
  for (const auto& [name, m] : modules)
    if (is_lora_layer(*m)) lora_prefixes.push_back(name + ".");
  std::vector<std::string> out;
  for (const auto& [name, m] : modules) {
    // PEFT's all-linear takes transformers' Conv1D too (GPT-2's projections).
    const bool linear = dynamic_cast<const nn::Linear*>(m.get()) != nullptr ||
                        dynamic_cast<const nn::Conv1D*>(m.get()) != nullptr ||
                        (is_lora_layer(*m) && m->type_name().find("Linear") != std::string::npos);
    if (!linear || excluded.count(name)) continue;
    bool inside = false;
    for (const auto& p : lora_prefixes) inside = inside || name.rfind(p, 0) == 0;
    if (!inside) out.push_back(name);
  }
  return out;
}

std::vector<std::string> find_minimal_target_modules(const std::vector<std::string>& targets,
                                                     const std::vector<std::string>& other_names) {
  PEFT_CHECK(!targets.empty(), "target_modules should be a list or set of strings.");
  const std::set<std::string> target_set(targets.begin(), targets.end());
  PEFT_CHECK(!target_set.count(""), "target_modules should not contain an empty string.");
  std::set<std::string> other_suffixes;
  for (const auto& o : other_names) {
    PEFT_CHECK(!target_set.count(o), "target_modules and other_module_names contain common elements, this should not "
               "happen, please open a GitHub issue at https://github.com/huggingface/peft/issues with the code to "
               "reproduce this issue");
    for (auto& s : name_suffixes(o)) other_suffixes.insert(std::move(s));
  }
  // PEFT visits the targets sorted by their suffix lists (shortest suffix first), for determinism.
  std::vector<std::vector<std::string>> by_suffixes;
  for (const auto& t : target_set) by_suffixes.push_back(name_suffixes(t));
  std::sort(by_suffixes.begin(), by_suffixes.end());
  std::set<std::string> required;
  for (const auto& suffixes : by_suffixes) {
    const std::string& item = suffixes.back();  // the longest suffix is the name itself
    for (const auto& suffix : suffixes) {
      if (required.count(suffix) || other_suffixes.count(suffix)) continue;
      bool covered = false;
      for (const auto& r : required) covered = covered || ends_with_dotted(item, r);
      if (!covered) {
        required.insert(suffix);
        break;
      }
    }
  }
  if (required.empty()) return {target_set.begin(), target_set.end()};
  return {required.begin(), required.end()};
}

LoraConfig with_resolved_target_modules(nn::Module& model, LoraConfig config) {
  config.validate();  // before "all-linear" becomes a list: layers_to_transform is refused with a string
  if (config.target_modules.is_all_linear()) config.target_modules = all_linear_module_names(model, config);
  if (!config.target_modules.is_set() || config.target_modules.is_regex()) return config;
  const auto& targets = config.target_modules.names();
  if (targets.size() < kMinTargetModulesForOptimization) return config;
  // PEFT: the other names are every named_modules key ("" included) that no target matches by
  // full name or "." suffix.
  const std::set<std::string> target_set(targets.begin(), targets.end());
  std::vector<std::string> others;
  for (const auto& [name, m] : model.named_modules()) {
    bool hit = target_set.count(name) > 0;
    for (const auto& t : targets) hit = hit || ends_with_dotted(name, t);
    if (!hit) others.push_back(name);
  }
  auto condensed = find_minimal_target_modules(targets, others);
  if (condensed.size() < targets.size()) config.target_modules = std::move(condensed);
  return config;
}

}  // namespace peft
