#include "adapters/lora_model.h"

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>

#include "adapters/dispatch.h"
#include "core/ops.h"

namespace peft {

bool name_matches_entry(const std::string& name, const std::string& entry) {
  if (name == entry) return true;
  return name.size() > entry.size() && name.compare(name.size() - entry.size(), entry.size(), entry) == 0 &&
         name[name.size() - entry.size() - 1] == '.';
}

namespace {

bool selector_matches(const ModuleSelector& sel, const std::string& name) {
  if (!sel.is_set()) return false;
  if (sel.is_regex()) return std::regex_match(name, std::regex(sel.regex()));
  for (const auto& e : sel.names())
    if (name_matches_entry(name, e)) return true;
  return false;
}

// The layer index of `name` for layers_to_transform: the number after one of the layer
// patterns ("layers", "h", "blocks", ... or the config's), as PEFT's default regex.
std::optional<int64_t> layer_index(const LoraConfig& cfg, const std::string& name) {
  std::vector<std::string> patterns = cfg.layers_pattern && !cfg.layers_pattern->empty()
                                          ? *cfg.layers_pattern
                                          : std::vector<std::string>{"layers", "h", "block", "blocks", "layer"};
  for (const auto& p : patterns) {
    std::smatch m;
    std::regex re(".*\\." + p + "\\.(\\d+)\\..*");
    if (std::regex_match(name, m, re)) return std::stoll(m[1].str());
  }
  return std::nullopt;
}

bool is_adapter_container(const nn::Module& m) {
  return dynamic_cast<const LoraLayer*>(&m) != nullptr || dynamic_cast<const ModulesToSaveWrapper*>(&m) != nullptr;
}

struct Plan {
  std::vector<std::pair<std::string, nn::ModulePtr>> new_lora;      // name → new LoRA layer
  std::vector<std::pair<std::string, std::shared_ptr<LoraLayer>>> existing_lora;
  std::vector<std::string> targeted;
  std::vector<std::pair<std::string, nn::ModulePtr>> to_save;       // name → module to wrap or wrapper
};

// Decides everything and builds the new layers without touching the model.
Plan plan_injection(nn::Module& root, const LoraConfig& cfg, const std::string& adapter) {
  cfg.validate();
  PEFT_CHECK(cfg.target_modules.is_set(), "Please specify `target_modules` in `peft_config`");
  Plan plan;
  std::vector<std::string> inside;  // prefixes of adapter containers and modules_to_save
  bool any_target_match = false, any_excluded = false;
  for (auto& [name, module] : root.named_modules()) {
    if (name.empty()) continue;
    bool nested = false;
    for (const auto& p : inside) nested = nested || name.rfind(p + ".", 0) == 0;
    if (nested) continue;  // rule 5 (inside an adapter layer) and rule 2 (inside modules_to_save)
    if (cfg.modules_to_save) {
      bool save = false;
      for (const auto& e : *cfg.modules_to_save) save = save || name_matches_entry(name, e);
      if (save) {
        plan.to_save.emplace_back(name, module);
        inside.push_back(name);
        continue;
      }
    }
    if (is_adapter_container(*module) && !dynamic_cast<LoraLayer*>(module.get())) {
      inside.push_back(name);
      continue;
    }
    if (!target_matches(cfg, name)) {
      if (is_adapter_container(*module)) inside.push_back(name);
      continue;
    }
    any_target_match = true;
    if (exclude_matches(cfg, name)) {
      any_excluded = true;
      if (is_adapter_container(*module)) inside.push_back(name);
      continue;
    }
    if (auto existing = std::dynamic_pointer_cast<LoraLayer>(module)) {
      PEFT_CHECK(!existing->has_adapter(adapter), "Adapter '", adapter, "' already exists on '", name, "'");
      plan.existing_lora.emplace_back(name, existing);
      plan.targeted.push_back(name);
      inside.push_back(name);
      continue;
    }
    const LoraDispatchEntry* entry = find_lora_dispatch(cfg, *module);
    if (!entry) throw_unsupported_module(cfg, *module);
    plan.new_lora.emplace_back(name, entry->create(module, adapter, cfg.settings_for(name)));
    plan.targeted.push_back(name);
    inside.push_back(name);
  }
  if (plan.targeted.empty()) {
    if (any_target_match && any_excluded)
      PEFT_ERROR("All modules were excluded. This is likely unintended. Check your `target_modules`, "
                 "`exclude_modules` and `modules_to_save` configuration.");
    PEFT_ERROR("Target modules ", cfg.target_modules.describe(), " not found in the base model. Please check the "
               "target modules and try again.");
  }
  if (cfg.modules_to_save)
    for (const auto& [name, m] : plan.to_save)
      if (!dynamic_cast<ModulesToSaveWrapper*>(m.get())) (void)m->clone();  // fails now, not half-way
  return plan;
}

void apply_plan(nn::Module& root, Plan& plan, const LoraConfig& cfg, const std::string& adapter) {
  for (auto& [name, layer] : plan.existing_lora) layer->update_layer(adapter, cfg.settings_for(name));
  for (auto& [name, layer] : plan.new_lora) root.set_submodule(name, layer);
  for (auto& [name, m] : plan.to_save) {
    if (auto w = std::dynamic_pointer_cast<ModulesToSaveWrapper>(m)) w->update(adapter);
    else root.set_submodule(name, std::make_shared<ModulesToSaveWrapper>(m, adapter));
  }
}

// PEFT's _mark_only_adapters_as_trainable plus the bias modes.
void freeze_non_adapters(nn::Module& root, const LoraConfig& cfg, const std::string& adapter) {
  for (auto& [name, p] : root.named_parameters()) {
    bool in_wrapper_copy = name.find(".modules_to_save.") != std::string::npos ||
                           name.rfind("modules_to_save.", 0) == 0;
    if (name.find("lora_") == std::string::npos && !in_wrapper_copy) p.set_requires_grad(false);
  }
  if (cfg.bias == "all") {
    for (auto& [name, p] : root.named_parameters())
      if (name.find("bias") != std::string::npos) p.set_requires_grad(true);
  } else if (cfg.bias == "lora_only") {
    for (auto& [name, m] : root.named_modules())
      if (auto l = std::dynamic_pointer_cast<LoraLayer>(m))
        if (l->base_layer()->has_param("bias")) l->base_layer()->param("bias").set_requires_grad(true);
  }
  if (cfg.inference_mode) {  // adapters loaded for inference stay frozen
    for (auto& [name, m] : root.named_modules()) {
      if (auto l = std::dynamic_pointer_cast<LoraLayer>(m)) {
        if (l->has_adapter(adapter))
          for (auto& kv : l->adapter_parameters(adapter)) kv.second.set_requires_grad(false);
      } else if (auto w = std::dynamic_pointer_cast<ModulesToSaveWrapper>(m)) {
        if (w->has_adapter(adapter))
          for (auto& kv : w->copies()[adapter]->named_parameters()) kv.second.set_requires_grad(false);
      }
    }
  }
}

}  // namespace

bool target_matches(const LoraConfig& config, const std::string& name) {
  if (!selector_matches(config.target_modules, name)) return false;
  if (!config.target_modules.is_regex() && config.layers_to_transform && !config.layers_to_transform->empty()) {
    auto idx = layer_index(config, name);
    if (!idx) return false;
    const auto& l = *config.layers_to_transform;
    return std::find(l.begin(), l.end(), *idx) != l.end();
  }
  return true;
}

bool exclude_matches(const LoraConfig& config, const std::string& name) {
  return selector_matches(config.exclude_modules, name);
}

// ---------------------------------------------------------------- LoraModel

LoraModel::LoraModel(nn::ModulePtr model, const LoraConfig& config, const std::string& adapter_name) {
  PEFT_CHECK(model != nullptr, "LoraModel: model is null");
  register_module("model", model);
  training_ = model->is_training();
  inject_adapter(config, adapter_name);
}

const LoraConfig& LoraModel::config(const std::string& adapter_name) const {
  auto it = configs_.find(adapter_name);
  PEFT_CHECK(it != configs_.end(), "Adapter ", adapter_name, " not found.");
  return it->second;
}

void LoraModel::inject_adapter(const LoraConfig& config, const std::string& adapter_name) {
  PEFT_CHECK(!configs_.count(adapter_name), "Adapter with name ", adapter_name,
             " already exists. Please use a different name.");
  if (!configs_.empty())
    PEFT_CHECK(config.bias == "none" || std::all_of(configs_.begin(), configs_.end(), [](const auto& kv) {
                 return kv.second.bias == "none";
               }),
               "LoraModel supports only 1 adapter with bias. When using multiple adapters, set bias to 'none' for "
               "all adapters.");
  Plan plan = plan_injection(*model(), config, adapter_name);
  apply_plan(*model(), plan, config, adapter_name);
  configs_.emplace(adapter_name, config);
  for (const auto& n : plan.targeted)
    if (std::find(targeted_.begin(), targeted_.end(), n) == targeted_.end()) targeted_.push_back(n);
  // New adapters follow the currently active set (PEFT: only active adapters are trainable).
  for (auto& [n, l] : lora_layers()) l->set_adapter(active_);
  for (auto& [n, w] : wrappers()) w->set_adapter(active_);
  freeze_non_adapters(*model(), config, adapter_name);
}

std::vector<std::pair<std::string, std::shared_ptr<LoraLayer>>> LoraModel::lora_layers() const {
  std::vector<std::pair<std::string, std::shared_ptr<LoraLayer>>> out;
  for (auto& [n, m] : model()->named_modules())
    if (auto l = std::dynamic_pointer_cast<LoraLayer>(m)) out.emplace_back(n, l);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<ModulesToSaveWrapper>>> LoraModel::wrappers() const {
  std::vector<std::pair<std::string, std::shared_ptr<ModulesToSaveWrapper>>> out;
  for (auto& [n, m] : model()->named_modules())
    if (auto w = std::dynamic_pointer_cast<ModulesToSaveWrapper>(m)) out.emplace_back(n, w);
  return out;
}

void LoraModel::set_adapter(const std::vector<std::string>& names) {
  PEFT_CHECK(!names.empty(), "set_adapter: give at least one adapter name");
  for (const auto& n : names) PEFT_CHECK(configs_.count(n), "Adapter ", n, " not found.");
  for (auto& [n, l] : lora_layers()) {
    if (l->merged()) l->unmerge();
    l->set_adapter(names);
  }
  for (auto& [n, w] : wrappers()) w->set_adapter(names);
  active_ = names;
}

void LoraModel::enable_adapter_layers(bool enabled) {
  for (auto& [n, l] : lora_layers()) l->enable_adapters(enabled);
  for (auto& [n, w] : wrappers()) w->enable_adapters(enabled);
}

void LoraModel::delete_adapter(const std::string& name) {
  PEFT_CHECK(configs_.count(name), "Adapter ", name, " does not exist");
  for (auto& [n, l] : lora_layers())
    PEFT_CHECK(std::find(l->merged_adapters().begin(), l->merged_adapters().end(), name) == l->merged_adapters().end(),
               "delete_adapter: adapter ", name, " is merged into '", n, "'; unmerge it first");
  for (auto& [n, l] : lora_layers())
    if (l->has_adapter(name)) l->delete_adapter(name);
  for (auto& [n, w] : wrappers())
    if (w->has_adapter(name)) w->delete_adapter(name);
  configs_.erase(name);
  active_.erase(std::remove(active_.begin(), active_.end(), name), active_.end());
  if (active_.empty() && !configs_.empty()) set_adapter({configs_.begin()->first});
}

void LoraModel::merge_adapter(bool safe_merge, const std::vector<std::string>& names) {
  for (const auto& n : names) PEFT_CHECK(configs_.count(n), "Adapter ", n, " not found.");
  // Check every layer first so a broken adapter leaves nothing merged.
  if (safe_merge) {
    for (auto& [n, l] : lora_layers()) {
      std::vector<std::string> use = names.empty() ? l->active_adapters() : names;
      for (const auto& a : use)
        if (l->has_adapter(a)) {
          NoGradGuard g;
          Tensor merged = add(l->merge_target().detach(), l->get_delta_weight(a));
          for (double v : merged.to_vector<double>())
            PEFT_CHECK(std::isfinite(v), "NaNs detected in the merged weights. The adapter ", a, " seems to be broken");
        }
    }
  }
  for (auto& [n, l] : lora_layers()) {
    std::vector<std::string> use;
    for (const auto& a : names.empty() ? l->active_adapters() : names)
      if (l->has_adapter(a)) use.push_back(a);
    if (!use.empty()) l->merge(false, use);
  }
}

void LoraModel::unmerge_adapter() {
  for (auto& [n, l] : lora_layers()) l->unmerge();
}

nn::ModulePtr LoraModel::unload_impl(bool merge, bool safe_merge) {
  if (merge) merge_adapter(safe_merge, active_);
  for (auto& [n, l] : lora_layers()) model()->set_submodule(n, l->base_layer());
  for (auto& [n, w] : wrappers()) {
    nn::ModulePtr keep = (merge && !w->active_adapter().empty()) ? w->copies()[w->active_adapter()] : w->original_module();
    model()->set_submodule(n, keep);
  }
  return model();
}

nn::ModulePtr inject_adapter_in_model(const LoraConfig& config, nn::ModulePtr model, const std::string& adapter_name) {
  PEFT_CHECK(model != nullptr, "inject_adapter_in_model: model is null");
  Plan plan = plan_injection(*model, config, adapter_name);
  apply_plan(*model, plan, config, adapter_name);
  freeze_non_adapters(*model, config, adapter_name);
  return model;
}

}  // namespace peft
