// Containers. Sequential runs its children through the children table in order, so a
// replaced child (set_submodule, LoRA injection) is what runs.
#pragma once
#include <initializer_list>

#include "layers/module.h"

namespace peft::nn {

class Sequential : public Module {
 public:
  PEFT_MODULE_CLONE(Sequential)
  Sequential() = default;
  Sequential(std::initializer_list<ModulePtr> modules);
  explicit Sequential(const std::vector<ModulePtr>& modules);
  std::string type_name() const override { return "Sequential"; }
  // Appends under the next index name ("0", "1", ...).
  void push_back(ModulePtr m);
  size_t size() const { return named_children().size(); }
  ModulePtr operator[](size_t i) const;
  Tensor forward(const Tensor& x) override;
};

// Holds modules by index; no forward (as torch.nn.ModuleList).
class ModuleList : public Module {
 public:
  PEFT_MODULE_CLONE(ModuleList)
  ModuleList() = default;
  ModuleList(std::initializer_list<ModulePtr> modules);
  std::string type_name() const override { return "ModuleList"; }
  void push_back(ModulePtr m);
  size_t size() const { return named_children().size(); }
  ModulePtr operator[](size_t i) const;
};

// Holds modules by key, in insertion order; no forward (as torch.nn.ModuleDict).
class ModuleDict : public Module {
 public:
  PEFT_MODULE_CLONE(ModuleDict)
  std::string type_name() const override { return "ModuleDict"; }
  void insert(const std::string& key, ModulePtr m) { register_module(key, std::move(m)); }
  ModulePtr operator[](const std::string& key) const { return child(key); }
  bool contains(const std::string& key) const { return has_child(key); }
  size_t size() const { return named_children().size(); }
};

// Holds parameters by key, in insertion order (as torch.nn.ParameterDict).
class ParameterDict : public Module {
 public:
  PEFT_MODULE_CLONE(ParameterDict)
  std::string type_name() const override { return "ParameterDict"; }
  void insert(const std::string& key, Tensor t, bool requires_grad = true) { register_parameter(key, std::move(t), requires_grad); }
  Tensor& operator[](const std::string& key) { return param(key); }
  bool contains(const std::string& key) const { return has_param(key); }
  size_t size() const { return named_parameters(false).size(); }
};

}  // namespace peft::nn
