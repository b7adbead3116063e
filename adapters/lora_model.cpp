#include "adapters/lora_model.h"
#include "adapters/target_mapping.h"

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <regex>
#include <set>

#include "adapters/dispatch.h"
#include "adapters/lora_conv1d.h"
#include "adapters/model_status.h"
#include "adapters/lora_init.h"
#include "core/log.h"
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

// The layer index of `name` for layers_to_transform, with PEFT's regexes: without
// layers_pattern the first number preceded by two dotted segments; with patterns, the number
// after the first pattern that matches.
std::optional<int64_t> layer_index(const LoraConfig& cfg, const std::string& name) {
  std::smatch m;
  if (!cfg.layers_pattern || cfg.layers_pattern->empty()) {
    if (std::regex_search(name, m, std::regex(R"(^.*?\.[^.]*\.(\d+)\.)"))) return std::stoll(m[1].str());
    return std::nullopt;
  }
  for (const auto& p : *cfg.layers_pattern)
    if (std::regex_search(name, m, std::regex("^(?:.*?\\.)?" + p + R"(\.(\d+)\.)"))) return std::stoll(m[1].str());
  return std::nullopt;
}

// PEFT: a modules_to_save entry m covers the module and everything inside it,
// (^|.*\.)m($|\..*).
bool inside_modules_to_save(const LoraConfig& cfg, const std::string& name) {
  if (!cfg.modules_to_save) return false;
  for (const auto& e : *cfg.modules_to_save)
    if (name_matches_entry(name, e) || name.find("." + e + ".") != std::string::npos || name.rfind(e + ".", 0) == 0)
      return true;
  return false;
}

bool is_adapter_container(const nn::Module& m) {
  return dynamic_cast<const LoraLayer*>(&m) != nullptr || dynamic_cast<const ModulesToSaveWrapper*>(&m) != nullptr;
}

struct Plan {
  std::vector<std::pair<std::string, nn::ModulePtr>> new_lora;      // name → new LoRA layer
  std::vector<std::pair<std::string, std::shared_ptr<LoraLayer>>> existing_lora;
  std::vector<std::string> targeted;
  std::vector<std::pair<std::string, nn::ModulePtr>> to_save;       // name → module to wrap or wrapper
  bool fan_in_fan_out = false;  // the config's value once PEFT's dispatch has switched it per layer
};

// Decides everything and builds the new layers without touching the model.
Plan plan_injection(nn::Module& root, const LoraConfig& cfg, const std::string& adapter) {
  cfg.validate();
  PEFT_CHECK(cfg.target_modules.is_set(), "Please specify `target_modules` or `target_parameters`in `peft_config`");
  Plan plan;
  plan.fan_in_fan_out = cfg.fan_in_fan_out;
  std::vector<std::string> inside;  // prefixes of adapter layers and wrappers: never matched (rule 5)
  std::vector<std::string> excluded, unmatched;
  for (auto& [name, module] : root.named_modules()) {
    if (name.empty()) continue;
    bool nested = false;
    for (const auto& p : inside) nested = nested || name.rfind(p + ".", 0) == 0;
    if (nested) continue;
    if (is_adapter_container(*module) && !dynamic_cast<LoraLayer*>(module.get())) inside.push_back(name);
    // PEFT's order: exclude_modules, then modules_to_save (rule 1, rule 2), then the targets.
    if (exclude_matches(cfg, name) || inside_modules_to_save(cfg, name)) {
      excluded.push_back(name);
      if (cfg.modules_to_save)
        for (const auto& e : *cfg.modules_to_save)
          if (name_matches_entry(name, e)) plan.to_save.emplace_back(name, module);
      if (is_adapter_container(*module)) inside.push_back(name);
      continue;
    }
    if (!target_matches(cfg, name)) {
      unmatched.push_back(name);
      if (is_adapter_container(*module)) inside.push_back(name);
      continue;
    }
    inside.push_back(name);
    plan.targeted.push_back(name);
    if (auto existing = std::dynamic_pointer_cast<LoraLayer>(module)) {
      PEFT_CHECK(!existing->has_adapter(adapter), "Adapter with name '", adapter, "' already exists.");
      plan.existing_lora.emplace_back(name, existing);
      continue;
    }
    const LoraDispatchEntry* entry = find_lora_dispatch(cfg, *module);
    if (!entry) throw_unsupported_module(cfg, *module);
    plan.fan_in_fan_out = fan_in_fan_out_after_dispatch(*entry, plan.fan_in_fan_out);
    plan.new_lora.emplace_back(name, entry->create(module, adapter, cfg.settings_for(name)));
  }
  if (plan.targeted.empty()) {
    std::string note;
    if (cfg.layers_to_transform) {
      note += " Note: You specified 'layers_to_transform': [";
      for (size_t i = 0; i < cfg.layers_to_transform->size(); ++i)
        note += (i ? ", " : "") + std::to_string((*cfg.layers_to_transform)[i]);
      note += "].";
    }
    if (cfg.layers_pattern) {
      note += " You also specified 'layers_pattern': [";
      for (size_t i = 0; i < cfg.layers_pattern->size(); ++i) note += (i ? ", '" : "'") + (*cfg.layers_pattern)[i] + "'";
      note += "].";
    }
    if (!excluded.empty() && unmatched.empty())
      PEFT_ERROR("All modules were excluded. This is likely unintended. Check your `target_modules`, "
                 "`exclude_modules` and `modules_to_save` configuration.");
    // Python's falsy target_modules: an empty list (all-linear on a model without Linear) or "".
    const bool no_targets = cfg.target_modules.is_regex() ? cfg.target_modules.regex().empty()
                                                          : cfg.target_modules.names().empty();
    if (excluded.empty() && !unmatched.empty() && no_targets)
      PEFT_ERROR("No `target_modules` passed but also no `target_parameters` found. Please check the values for "
                 "these arguments.");
    if (excluded.empty())
      PEFT_ERROR("Target modules ", cfg.target_modules.describe(), " not found in the base model. Please check the "
                 "target modules and try again.", note);
    PEFT_ERROR("No modules were targeted for adaptation. This might be caused by a combination of mismatched target "
               "modules and excluded modules. Please check your `target_modules` and `exclude_modules` configuration. "
               "You may also have only targeted modules that are marked to be saved (`modules_to_save`).", note);
  }
  for (const auto& [name, m] : plan.to_save)
    if (!dynamic_cast<ModulesToSaveWrapper*>(m.get())) (void)m->clone();  // fails now, not half-way
  return plan;
}

void apply_plan(nn::Module& root, Plan& plan, const LoraConfig& cfg, const std::string& adapter) {
  for (auto& [name, layer] : plan.existing_lora) layer->update_layer(adapter, cfg.settings_for(name));
  // Every new adapter sits where its base layer is (PEFT's _move_adapter_to_device_of_base_layer),
  // whichever layer class made it: the LoraLayer contract (adapters/lora_layer.h).
  for (auto& [name, layer] : plan.existing_lora) layer->move_adapter_to_base_device(adapter);
  for (auto& [name, layer] : plan.new_lora)
    if (auto l = std::dynamic_pointer_cast<LoraLayer>(layer)) l->move_adapter_to_base_device(adapter);
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
        // PEFT's set_adapter(active_adapters, inference_mode=True) on every layer the new
        // adapter reaches: the active adapters there are frozen too.
        if (l->has_adapter(adapter))
          for (const auto& a : l->adapter_names())
            for (auto& kv : l->adapter_parameters(a)) kv.second.set_requires_grad(false);
      } else if (auto w = std::dynamic_pointer_cast<ModulesToSaveWrapper>(m)) {
        if (w->has_adapter(adapter))
          for (auto& kv : w->copies().named_parameters()) kv.second.set_requires_grad(false);
      }
    }
  }
}

}  // namespace

bool target_matches(const LoraConfig& config, const std::string& name) {
  if (!selector_matches(config.target_modules, name)) return false;
  if (config.target_modules.is_regex()) return true;
  const auto& names = config.target_modules.names();
  if (std::find(names.begin(), names.end(), name) != names.end()) return true;  // exact: no layer filter (PEFT)
  if (config.layers_to_transform && !config.layers_to_transform->empty()) {
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
  active_ = {adapter_name};  // the first adapter is the active one, whatever its name
  inject_adapter(config, adapter_name);
}

void LoraModel::cast_adapter_dtype(const std::string& adapter_name) {
  std::vector<Tensor> narrow;
  for (const auto& [layer_name, layer] : lora_layers())
    for (const Tensor& t : layer->adapter_tensors(adapter_name))
      if (t.dtype() == DType::BF16 || t.dtype() == DType::F16) narrow.push_back(t);
  nn::convert_in_place(narrow, std::nullopt, DType::F32);
}

const LoraConfig& LoraModel::config(const std::string& adapter_name) const {
  auto it = configs_.find(adapter_name);
  PEFT_CHECK(it != configs_.end(), "Adapter ", adapter_name, " not found.");
  return it->second;
}

void LoraModel::inject_adapter(const LoraConfig& config_in, const std::string& adapter_name) {
  // "all-linear" and long lists resolved as PEFT's inject_adapter does; the stored (saved) config has
  // the result, as PEFT's peft_config[adapter] has.
  const LoraConfig config =
      with_resolved_target_modules(*model(), with_default_target_modules(*model(), config_in));
  PEFT_CHECK(!configs_.count(adapter_name), "Adapter with name '", adapter_name, "' already exists.");
  if (!configs_.empty())
    PEFT_CHECK(config.bias == "none" || std::all_of(configs_.begin(), configs_.end(), [](const auto& kv) {
                 return kv.second.bias == "none";
               }),
               "LoraModel supports only 1 adapter with bias. When using multiple adapters, set bias to 'none' for "
               "all adapters.");
  BaseWeightGuard base_weights;  // PiSSA / OLoRA rewrite base weights: put back if building fails
  Plan plan = plan_injection(*model(), config, adapter_name);
  apply_plan(*model(), plan, config, adapter_name);
  base_weights.commit();
  // PEFT's dispatch rewrites the config's fan_in_fan_out per new Linear / Conv1D layer, and the
  // adapter's (saved) config keeps the last value.
  LoraConfig stored = config;
  stored.fan_in_fan_out = plan.fan_in_fan_out;
  configs_.emplace(adapter_name, std::move(stored));
  for (const auto& n : plan.targeted)
    if (std::find(targeted_.begin(), targeted_.end(), n) == targeted_.end()) targeted_.push_back(n);
  // New adapters follow the currently active set (PEFT: only active adapters are trainable).
  // As PEFT's update_layer, only the layers that got the new adapter are touched, so an adapter
  // loaded frozen elsewhere stays frozen.
  for (auto& [n, l] : lora_layers())
    if (l->has_adapter(adapter_name)) l->set_adapter(active_);
  for (auto& [n, w] : wrappers())
    if (w->has_adapter(adapter_name)) w->set_adapter(active_);
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
  for (auto& [n, w] : wrappers()) {
    int present = 0;
    for (const auto& a : names) present += w->has_adapter(a) ? 1 : 0;
    PEFT_CHECK(present <= 1, "Only one adapter can be set at a time for modules_to_save (", n, "), got ", present);
  }
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
               "Cannot delete adapter(s) ['", name, "'] while they are merged. Please unmerge them first.");
  for (auto& [n, l] : lora_layers())
    if (l->has_adapter(name)) l->delete_adapter(name);
  for (auto& [n, w] : wrappers())
    if (w->has_adapter(name)) w->delete_adapter(name);
  configs_.erase(name);
  const bool was_active = std::find(active_.begin(), active_.end(), name) != active_.end();
  active_.erase(std::remove(active_.begin(), active_.end(), name), active_.end());
  // PEFT: the remaining active adapters, else the alphabetically first remaining one.
  if (was_active && !configs_.empty()) set_adapter(active_.empty() ? std::vector<std::string>{configs_.begin()->first} : active_);
}

void LoraModel::merge_adapter(bool safe_merge, const std::vector<std::string>& names) {
  for (const auto& n : names) PEFT_CHECK(configs_.count(n), "Adapter ", n, " not found.");
  // Each layer checks its own result before writing (safe_merge); if one refuses, the layers
  // merged by this call are unmerged again so the model is left as it was.
  std::vector<std::pair<std::shared_ptr<LoraLayer>, size_t>> done;
  try {
    for (auto& [n, l] : lora_layers()) {
      std::vector<std::string> use;
      for (const auto& a : names.empty() ? l->active_adapters() : names)
        if (l->has_adapter(a)) use.push_back(a);
      if (use.empty()) continue;
      const size_t before = l->merged_adapters().size();
      l->merge(safe_merge, use);
      done.emplace_back(l, before);
    }
  } catch (...) {
    for (auto& [l, before] : done)
      if (before == 0) l->unmerge();
    throw;
  }
}

void LoraModel::unmerge_adapter() {
  for (auto& [n, l] : lora_layers()) l->unmerge();
}

nn::ModulePtr LoraModel::unload_impl(bool merge, bool safe_merge, const std::vector<std::string>& adapter_names,
                                     bool keep_copies) {
  for (const auto& n : adapter_names) PEFT_CHECK(configs_.count(n), "Adapter ", n, " not found.");
  if (merge) merge_adapter(safe_merge, adapter_names.empty() ? active_ : adapter_names);
  // Innermost first: a LoRA layer inside another's base layer (lora.MultiheadAttention's out_proj)
  // is replaced while its path still exists.
  const auto layers = lora_layers();
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) model()->set_submodule(it->first, it->second->base_layer());
  // PEFT's ModulesToSaveWrapper.unload_and_optionally_merge_module: the trained copy is what the
  // model computed with, so unload() keeps it too (not only merge_and_unload()).
  for (auto& [n, w] : wrappers()) {
    const bool copy = keep_copies && !w->active_adapter().empty();
    model()->set_submodule(n, copy ? w->copies()[w->active_adapter()] : w->original_module());
  }
  return model();
}

void LoraModel::enable_adapter_layers() { set_adapter_layers_enabled(*this, true); }
void LoraModel::disable_adapter_layers() { set_adapter_layers_enabled(*this, false); }

void LoraModel::set_requires_grad(const std::vector<std::string>& adapter_names, bool requires_grad) {
  for (const auto& n : adapter_names) PEFT_CHECK(configs_.count(n), "Adapter ", n, " not found.");
  peft::set_requires_grad(*model(), adapter_names, requires_grad);
}

nn::ModulePtr inject_adapter_in_model(const LoraConfig& config_in, nn::ModulePtr model, const std::string& adapter_name) {
  PEFT_CHECK(model != nullptr, "inject_adapter_in_model: model is null");
  const LoraConfig config =
      with_resolved_target_modules(*model, with_default_target_modules(*model, config_in));
  BaseWeightGuard base_weights;  // as in LoraModel::inject_adapter
  Plan plan = plan_injection(*model, config, adapter_name);
  apply_plan(*model, plan, config, adapter_name);
  base_weights.commit();
  // The injected adapter is the active one (as PEFT's tuner does), whatever its name.
  for (auto& [name, m] : model->named_modules()) {
    if (auto l = std::dynamic_pointer_cast<LoraLayer>(m)) l->set_adapter({adapter_name});
    else if (auto w = std::dynamic_pointer_cast<ModulesToSaveWrapper>(m)) w->set_adapter({adapter_name});
  }
  freeze_non_adapters(*model, config, adapter_name);
  return model;
}

}  // namespace peft
