#include "adapters/model_status.h"

#include <algorithm>
#include <set>

#include "adapters/lora_model.h"
#include "adapters/peft_model.h"
#include "core/log.h"

namespace peft {

namespace {

Uniform combine(const std::vector<Uniform>& vals) {
  const bool all_on = std::all_of(vals.begin(), vals.end(), [](Uniform u) { return u == Uniform::True; });
  const bool all_off = std::all_of(vals.begin(), vals.end(), [](Uniform u) { return u == Uniform::False; });
  // PEFT's all([]) is True: an adapter never seen reads as trainable (not reachable: keys come from tensors).
  if (all_on) return Uniform::True;
  if (all_off) return Uniform::False;
  return Uniform::Irregular;
}

nlohmann::json uniform_json(Uniform u) {
  if (u == Uniform::Irregular) return "irregular";
  return u == Uniform::True;
}

nlohmann::json flags_json(const std::map<std::string, Uniform>& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : m) j[k] = uniform_json(v);
  return j;
}

nlohmann::json devices_json(const std::map<std::string, std::vector<std::string>>& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

std::string device_type(const Tensor& t) {
  switch (t.device().type) {
    case Device::Type::CPU: return "cpu";
    case Device::Type::CUDA: return "cuda";
    case Device::Type::Meta: return "meta";
  }
  return "unknown";
}

// Per adapter key of the containers `names` of `layer` (ModuleDicts of modules, or
// ParameterDicts): the requires_grad flags and device types of its tensors. A key whose module
// has no parameters (lora_dropout) still appears in `devices`, as in PEFT.
struct TensorsByAdapter {
  std::map<std::string, std::vector<Uniform>> grads;
  std::map<std::string, std::set<std::string>> devices;
};

void collect(const nn::Module& container, bool count_grads, TensorsByAdapter& out) {
  for (const auto& [key, sub] : container.named_children()) {
    auto& devs = out.devices[key];
    for (const auto& [n, p] : sub->named_parameters()) {
      devs.insert(device_type(p));
      if (count_grads) out.grads[key].push_back(p.requires_grad() ? Uniform::True : Uniform::False);
    }
  }
  for (const auto& [key, p] : container.named_parameters(false)) {
    out.devices[key].insert(device_type(p));
    if (count_grads) out.grads[key].push_back(p.requires_grad() ? Uniform::True : Uniform::False);
  }
}

void fill_tensors(TunerLayerStatus& s, const TensorsByAdapter& t) {
  for (const auto& [k, v] : t.grads) s.requires_grad[k] = combine(v);
  for (const auto& [k, v] : t.devices) s.devices[k] = std::vector<std::string>(v.begin(), v.end());
}

TunerLayerStatus lora_layer_status(const std::string& name, const LoraLayer& l) {
  TunerLayerStatus s;
  s.name = name;
  s.module_type = l.type_name();
  s.enabled = !l.disabled();
  s.active_adapters = l.active_adapters();
  s.merged_adapters = l.merged_adapters();
  s.available_adapters = l.adapter_names();
  std::sort(s.available_adapters.begin(), s.available_adapters.end());
  // PEFT's adapter_layer_names (trainable weights) count for requires_grad; its other_param_names
  // add lora_dropout to the devices. A user-written layer's "lora_*" containers count the same way.
  TensorsByAdapter t;
  for (const auto& [cname, c] : l.named_children())
    if (cname.rfind("lora_", 0) == 0) collect(*c, cname != "lora_dropout", t);
  fill_tensors(s, t);
  return s;
}

TunerLayerStatus wrapper_status(const std::string& name, const ModulesToSaveWrapper& w) {
  TunerLayerStatus s;
  s.name = name;
  s.module_type = w.type_name();
  s.enabled = !w.disabled();
  if (!w.active_adapter().empty()) s.active_adapters = {w.active_adapter()};
  for (const auto& [k, m] : w.copies().named_children()) s.available_adapters.push_back(k);
  std::sort(s.available_adapters.begin(), s.available_adapters.end());
  TensorsByAdapter t;
  collect(w.copies(), true, t);
  fill_tensors(s, t);
  return s;
}

}  // namespace

nlohmann::json TunerLayerStatus::to_json() const {
  return {{"name", name},
          {"module_type", module_type},
          {"enabled", enabled},
          {"active_adapters", active_adapters},
          {"merged_adapters", merged_adapters},
          {"requires_grad", flags_json(requires_grad)},
          {"available_adapters", available_adapters},
          {"devices", devices_json(devices)},
          {"quantization_backend", nullptr}};
}

nlohmann::json TunerModelStatus::to_json() const {
  auto list_or_irregular = [](const std::optional<std::vector<std::string>>& v) -> nlohmann::json {
    if (!v) return "irregular";
    return *v;
  };
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [k, v] : peft_types) types[k] = v;
  return {{"base_model_type", base_model_type},
          {"adapter_model_type", adapter_model_type},
          {"peft_types", types},
          {"trainable_params", trainable_params},
          {"total_params", total_params},
          {"num_adapter_layers", num_adapter_layers},
          {"enabled", uniform_json(enabled)},
          {"active_adapters", list_or_irregular(active_adapters)},
          {"merged_adapters", list_or_irregular(merged_adapters)},
          {"requires_grad", flags_json(requires_grad)},
          {"available_adapters", available_adapters},
          {"devices", devices_json(devices)},
          {"quantization_backend", nullptr}};
}

std::vector<TunerLayerStatus> get_layer_status(nn::Module& model) {
  nn::Module* root = &model;
  if (auto* pm = dynamic_cast<PeftModel*>(&model)) root = pm->base_model().get();
  std::vector<TunerLayerStatus> out;
  for (const auto& [name, m] : root->named_modules()) {
    if (auto* l = dynamic_cast<const LoraLayer*>(m.get())) out.push_back(lora_layer_status(name, *l));
    else if (auto* w = dynamic_cast<const ModulesToSaveWrapper*>(m.get())) out.push_back(wrapper_status(name, *w));
  }
  PEFT_CHECK(!out.empty(), "No adapter layers found in the model, please ensure that it's a PEFT model or that you "
                           "have PEFT adapters injected in the model.");
  return out;
}

TunerModelStatus get_model_status(nn::Module& model) {
  TunerModelStatus s;
  if (auto* pm = dynamic_cast<PeftModel*>(&model)) {
    s.base_model_type = pm->model()->type_name();
    s.adapter_model_type = pm->base_model()->type_name();
    for (const auto& [name, cfg] : pm->peft_config()) s.peft_types[name] = "LORA";
  } else {
    s.base_model_type = "other";
    s.adapter_model_type = "None";
  }
  for (const auto& [n, p] : model.named_parameters()) {
    s.total_params += p.numel();
    if (p.requires_grad()) s.trainable_params += p.numel();
  }
  const std::vector<TunerLayerStatus> layers = get_layer_status(model);
  s.num_adapter_layers = static_cast<int64_t>(layers.size());

  std::set<bool> enabled;
  std::set<std::vector<std::string>> active;
  std::set<std::string> available, merged_somewhere;
  std::map<std::string, std::vector<Uniform>> grads;
  std::map<std::string, std::set<std::string>> devices;
  for (const auto& l : layers) {
    enabled.insert(l.enabled);
    active.insert(l.active_adapters);
    available.insert(l.available_adapters.begin(), l.available_adapters.end());
    merged_somewhere.insert(l.merged_adapters.begin(), l.merged_adapters.end());
    for (const auto& [k, v] : l.requires_grad) grads[k].push_back(v);
    for (const auto& [k, v] : l.devices) devices[k].insert(v.begin(), v.end());
  }
  s.enabled = enabled.size() == 1 ? (*enabled.begin() ? Uniform::True : Uniform::False) : Uniform::Irregular;
  if (active.size() == 1) s.active_adapters = *active.begin();
  s.available_adapters.assign(available.begin(), available.end());
  // An adapter merged on one layer but present and unmerged on another makes the whole report
  // irregular (PEFT counts modules_to_save wrappers here too: they never merge).
  s.merged_adapters = std::vector<std::string>(merged_somewhere.begin(), merged_somewhere.end());
  for (const auto& l : layers)
    for (const auto& a : l.available_adapters)
      if (merged_somewhere.count(a) &&
          std::find(l.merged_adapters.begin(), l.merged_adapters.end(), a) == l.merged_adapters.end())
        s.merged_adapters.reset();
  for (const auto& [k, v] : grads) s.requires_grad[k] = combine(v);
  for (const auto& [k, v] : devices) s.devices[k] = std::vector<std::string>(v.begin(), v.end());
  return s;
}

void set_adapter_layers_enabled(LoraModel& model, bool enabled) {
  if (!enabled)
    for (const auto& a : model.active_adapters()) {
      const std::string& bias = model.config(a).bias;
      if (bias != "none")
        log_warning("Careful, disabling adapter layers with bias configured to be '" + bias +
                    "' does not produce the same output as the base model would without adaption.");
    }
  for (auto& [n, l] : model.lora_layers()) {
    if (enabled) {
      l->set_adapter(l->active_adapters());  // active ones trainable, the others frozen
    } else {
      for (const auto& a : l->adapter_names())
        for (auto& kv : l->adapter_parameters(a)) kv.second.set_requires_grad(false);
    }
    l->enable_adapters(enabled);
  }
  for (auto& [n, w] : model.wrappers()) {
    if (enabled && !w->active_adapter().empty()) {
      for (auto& kv : w->copies()[w->active_adapter()]->named_parameters()) kv.second.set_requires_grad(true);
    } else if (!enabled) {
      for (auto& kv : w->copies().named_parameters()) kv.second.set_requires_grad(false);
    }
    w->enable_adapters(enabled);
  }
}

void set_requires_grad(nn::Module& root, const std::vector<std::string>& adapter_names, bool requires_grad) {
  for (const auto& [name, m] : root.named_modules()) {
    if (auto* l = dynamic_cast<LoraLayer*>(m.get())) {
      for (const auto& a : adapter_names)
        if (l->has_adapter(a))
          for (auto& kv : l->adapter_parameters(a)) kv.second.set_requires_grad(requires_grad);
    } else if (auto* w = dynamic_cast<ModulesToSaveWrapper*>(m.get())) {
      for (const auto& a : adapter_names)
        if (w->has_adapter(a))
          for (auto& kv : w->copies()[a]->named_parameters()) kv.second.set_requires_grad(requires_grad);
    }
  }
}

}  // namespace peft
