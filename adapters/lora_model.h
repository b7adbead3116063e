// The injection pass and the model-wide adapter operations (PEFT's LoraModel / BaseTuner):
// match names (the spec's five rules), pick each LoRA layer from the dispatch registry,
// replace modules in their parents, wrap modules_to_save, and freeze all but the adapters.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "adapters/lora_config.h"
#include "adapters/lora_layer.h"
#include "adapters/modules_to_save.h"

namespace peft {

// The spec's matching rules for one module name (exclusion and modules_to_save are separate).
bool target_matches(const LoraConfig& config, const std::string& name);
bool exclude_matches(const LoraConfig& config, const std::string& name);
// A list entry K matches `name` when name == K or name ends with "." + K.
bool name_matches_entry(const std::string& name, const std::string& entry);

// PEFT's LoraModel: holds the user's model as child "model" (so names read
// "base_model.model.seq.0..." under a PeftModel) and the adapter configs.
class LoraModel : public nn::Module {
 public:
  LoraModel(nn::ModulePtr model, const LoraConfig& config, const std::string& adapter_name);
  std::string type_name() const override { return "LoraModel"; }
  // Through Module::operator(), so anomaly errors and the profiler name modules by their full path
  // from the user's model ("seq.0 (Linear)").
  Tensor forward(const Tensor& x) override { return (*model())(x); }
  nn::ModulePtr model() const { return child("model"); }

  // Adds an adapter (all checks happen before the model is touched).
  void inject_adapter(const LoraConfig& config, const std::string& adapter_name);
  // PEFT's _cast_adapter_dtype: the adapter's BF16 / F16 parameters and buffers in every LoRA
  // layer (lora_A, lora_B, lora_embedding_*, lora_magnitude_vector, ...) become F32 in place, so a
  // BF16 base model trains F32 adapters. Other dtypes are left alone.
  void cast_adapter_dtype(const std::string& adapter_name);
  const std::map<std::string, LoraConfig>& peft_config() const { return configs_; }
  const LoraConfig& config(const std::string& adapter_name) const;
  const std::vector<std::string>& targeted_module_names() const { return targeted_; }
  const std::vector<std::string>& active_adapters() const { return active_; }
  void set_adapter(const std::vector<std::string>& names);
  // The enabled flag of every adapter layer and wrapper, nothing else (DisableAdapterGuard).
  void enable_adapter_layers(bool enabled);
  // PEFT's enable_adapter_layers() / disable_adapter_layers(): the flag and requires_grad
  // (adapters/model_status.h).
  void enable_adapter_layers();
  void disable_adapter_layers();
  // PEFT's set_requires_grad; every name must be an adapter of this model.
  void set_requires_grad(const std::vector<std::string>& adapter_names, bool requires_grad = true);
  void delete_adapter(const std::string& name);
  void merge_adapter(bool safe_merge = false, const std::vector<std::string>& names = {});
  void unmerge_adapter();
  // PEFT's _unload_and_optionally_merge: every LoRA layer becomes its base layer, merged first
  // when `merge` (with `adapter_names`, those adapters; else the active ones), and every
  // modules_to_save wrapper becomes its active adapter's trained copy, merging or not (its
  // original when no adapter of it is active). Names are checked before anything changes. With
  // `keep_copies` false the wrappers give back their originals (rolling back a failed load).
  nn::ModulePtr unload_impl(bool merge, bool safe_merge, const std::vector<std::string>& adapter_names = {},
                            bool keep_copies = true);

  // Every LoRA layer / wrapper in the model with its dotted name (relative to model()).
  std::vector<std::pair<std::string, std::shared_ptr<LoraLayer>>> lora_layers() const;
  std::vector<std::pair<std::string, std::shared_ptr<ModulesToSaveWrapper>>> wrappers() const;

 private:
  void mark_only_adapters_as_trainable(const LoraConfig& config, const std::string& adapter_name);
  std::map<std::string, LoraConfig> configs_;
  std::vector<std::string> targeted_;
  std::vector<std::string> active_ = {"default"};
};

// PEFT's inject_adapter_in_model: adapts `model` in place (no wrapper) and returns it.
nn::ModulePtr inject_adapter_in_model(const LoraConfig& config, nn::ModulePtr model,
                                      const std::string& adapter_name = "default");

}  // namespace peft
