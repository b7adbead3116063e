#include "adapters/modules_to_save.h"

#include <algorithm>

namespace peft {

namespace {
void set_trainable(nn::Module& m, bool on) {
  for (auto& kv : m.named_parameters()) kv.second.set_requires_grad(on);
}
}  // namespace

ModulesToSaveWrapper::ModulesToSaveWrapper(nn::ModulePtr original, const std::string& adapter_name) {
  PEFT_CHECK(original != nullptr, "ModulesToSaveWrapper: original module is null");
  register_module("original_module", original);
  register_module("modules_to_save", std::make_shared<nn::ModuleDict>());
  training_ = original->is_training();
  update(adapter_name);
  set_adapter({adapter_name});
}

nn::ModuleDict& ModulesToSaveWrapper::copies() const {
  return *std::dynamic_pointer_cast<nn::ModuleDict>(child("modules_to_save"));
}

bool ModulesToSaveWrapper::has_adapter(const std::string& name) const { return copies().contains(name); }

void ModulesToSaveWrapper::update(const std::string& name) {
  if (has_adapter(name)) return;
  nn::ModulePtr copy = original_module()->clone();
  set_trainable(*copy, true);
  copies().insert(name, copy);
  set_trainable(*original_module(), false);
}

void ModulesToSaveWrapper::set_adapter(const std::vector<std::string>& names) {
  PEFT_CHECK(names.size() <= 1 || std::count_if(names.begin(), names.end(), [&](const std::string& n) {
               return has_adapter(n);
             }) <= 1,
             "ModulesToSaveWrapper: only one adapter can be active at a time for modules_to_save");
  active_.clear();
  for (const auto& n : names)
    if (has_adapter(n)) active_ = n;
  for (auto& [n, m] : copies().named_children()) set_trainable(*m, n == active_);
  set_trainable(*original_module(), false);
}

void ModulesToSaveWrapper::delete_adapter(const std::string& name) {
  PEFT_CHECK(has_adapter(name), "ModulesToSaveWrapper: no adapter named '", name, "'");
  copies().unregister_module(name);
  if (active_ == name) active_.clear();
}

Tensor ModulesToSaveWrapper::forward(const Tensor& x) {
  if (disabled_ || active_.empty()) return original_module()->forward(x);
  return copies()[active_]->forward(x);
}

}  // namespace peft
