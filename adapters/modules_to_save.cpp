#include "adapters/modules_to_save.h"

#include <algorithm>

#include "adapters/mixed_batch.h"
#include "layers/conv.h"
#include "layers/embedding.h"
#include "layers/linear.h"

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
  const std::vector<std::string>* names = MixedBatchScope::current();
  if (names != nullptr) check_mixed_batch_length(x, *names);
  if (disabled_ || active_.empty()) return original_module()->forward(x);
  if (names == nullptr) return copies()[active_]->forward(x);
  // PEFT's _mixed_batch_forward: each row through its adapter's copy ("__base__": the original).
  nn::ModulePtr orig = original_module();
  PEFT_CHECK(dynamic_cast<nn::Linear*>(orig.get()) || dynamic_cast<nn::Embedding*>(orig.get()) ||
                 dynamic_cast<nn::Conv2d*>(orig.get()),
             "Mixed batching is only supported for the following modules: Linear, Embedding, Conv2d (got ",
             orig->type_name(), ").");
  const std::vector<RowGroup> groups = group_rows(*names);
  std::vector<Tensor> parts;
  for (const RowGroup& g : groups) {
    // An adapter without a copy here runs the original, as the unbatched forward does for an
    // active adapter this wrapper lacks (PEFT would raise a KeyError).
    nn::ModulePtr m = g.adapter != kBaseAdapterName && has_adapter(g.adapter) ? copies()[g.adapter] : orig;
    parts.push_back(m->forward(select_rows(x, g.rows)));
  }
  return assemble_rows(parts, groups);
}

}  // namespace peft
