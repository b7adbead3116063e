// Module: the layer tree with PyTorch's naming (DESIGN.md decision 1). Children, parameters
// and buffers live in ordered tables; named_* walk them pre-order in registration order,
// joining names with "."; containers run their children through the table, so
// set_submodule() changes what forward runs.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/tensor.h"

namespace peft::nn {

class Module;
using ModulePtr = std::shared_ptr<Module>;
// Ordered like PyTorch's state_dict when produced by Module::state_dict().
using StateDict = NamedTensors;

struct LoadResult {
  std::vector<std::string> missing_keys, unexpected_keys;
};

// Converts tensors in place (device and / or floating dtype; their .grad too), keeping each
// TensorImpl so every holder sees the change: the engine of Module::to. A tensor listed twice
// converts once; integer tensors keep their dtype. All-or-nothing: on error nothing changes.
void convert_in_place(const std::vector<Tensor>& tensors, std::optional<Device> device, std::optional<DType> dtype);

// Gives each tensor of `targets` the data of the same-position tensor of `values` (same shape;
// dtype and device may differ), keeping each TensorImpl as convert_in_place does: this is how a
// model built under MetaDeviceGuard receives its weights (hf::from_pretrained) without first
// allocating and initialising them. Shapes are all checked before any handle changes.
void assign_in_place(const std::vector<Tensor>& targets, const std::vector<Tensor>& values);

class Module : public std::enable_shared_from_this<Module> {
 public:
  virtual ~Module() = default;
  // The class name, as PyTorch prints it ("Linear", "MLP", ...).
  virtual std::string type_name() const = 0;
  // Single-tensor forward; modules with other signatures add their own methods.
  virtual Tensor forward(const Tensor& x);
  // forward() run as a call of this module: in anomaly mode it is pushed on the module path
  // that anomaly errors name (see ModuleCallScope); otherwise the same as forward().
  Tensor operator()(const Tensor& x);

  // ---- registration (names: non-empty, no ".", unique within the module)
  Tensor& register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

  // Removes a child / parameter by name (throws if absent), as `del module.name` in PyTorch.
  void unregister_module(const std::string& name);
  void unregister_parameter(const std::string& name);

  // ---- direct access (throws naming the module type and the missing name)
  Tensor& param(const std::string& name);
  const Tensor& param(const std::string& name) const;
  bool has_param(const std::string& name) const;
  Tensor& buffer(const std::string& name);
  ModulePtr child(const std::string& name) const;
  bool has_child(const std::string& name) const;

  // ---- traversal
  std::vector<std::pair<std::string, ModulePtr>> named_children() const;
  // Includes this module as "" (or `prefix`) first, then every descendant, pre-order.
  std::vector<std::pair<std::string, ModulePtr>> named_modules(const std::string& prefix = "");
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  // Dotted lookup ("seq.0"); "" is this module.
  ModulePtr get_submodule(const std::string& dotted);
  // Replaces the module at a dotted name, keeping its position among its siblings.
  void set_submodule(const std::string& dotted, ModulePtr m);

  // ---- mode
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- state
  StateDict state_dict() const;
  // Copies values into the existing tensors (so optimizers keep their references). Validates
  // everything first: shape mismatches always throw; with strict, missing/unexpected keys throw.
  // On error nothing is modified.
  LoadResult load_state_dict(const StateDict& sd, bool strict = true);
  void zero_grad();
  // Moves every parameter and buffer, and their .grad, to `device` in place, as torch's
  // module.to(): the same Tensor handles (same TensorImpl) point at new storage afterwards, so
  // optimizers and anything else holding them see the moved tensors. A failure (no such device,
  // out of memory) leaves the module as it was. Optimizer state (momentum, Adam moments) is not
  // moved: build the optimizer after moving the model, or move it back before stepping.
  void to(Device device);
  // Converts every floating point parameter and buffer (and its .grad) to `dtype` in place, as
  // torch's module.to(torch.bfloat16): same handles, new storage; integer buffers keep their
  // dtype. All-or-nothing like to(Device). For mixed precision: model->to(DType::BF16) on the
  // GPU, then get_peft_model (adapters are cast back to F32, see autocast_adapter_dtype) and
  // optim::MasterWeights for reduced-precision parameters that train.
  void to(DType dtype);

  // A deep copy (parameters, buffers and children copied; copies are leaves with the same
  // requires_grad), as copy.deepcopy. Layers opt in with PEFT_MODULE_CLONE(Class).
  virtual ModulePtr clone() const;

  // PyTorch-style printed tree.
  std::string repr() const;
  virtual std::string extra_repr() const { return ""; }

 protected:
  template <class T>
  static ModulePtr clone_as(const T& self) {
    auto copy = std::make_shared<T>(self);  // shallow: shares tensors and children
    copy->deep_copy_state();
    return copy;
  }
  // Replaces shared tensors and children by copies (used after a shallow copy).
  void deep_copy_state();
  void add_child(const std::string& name, ModulePtr m);
  std::vector<std::pair<std::string, Tensor>>& parameter_table() { return params_; }
  std::vector<std::pair<std::string, ModulePtr>>& child_table() { return children_; }
  bool training_ = true;

 private:
  friend class ModuleCallScope;
  // Dotted name of `target` within this module's subtree (pre-order search); false if absent.
  bool find_descendant(const Module* target, const std::string& prefix, std::string& out) const;
  void check_new_name(const std::string& name, const char* what) const;
  void collect_modules(const std::string& prefix, std::vector<std::pair<std::string, ModulePtr>>& out);
  void collect_tensors(const std::string& prefix, bool params, bool recurse,
                       std::vector<std::pair<std::string, Tensor>>& out) const;

  std::vector<std::pair<std::string, Tensor>> params_, buffers_;
  std::vector<std::pair<std::string, ModulePtr>> children_;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

// RAII, used by Module::operator() and by containers around each child they run: while anomaly
// mode is on, marks `m` as the module being run (thread-local), so an anomaly error names it as
// "seq.2 (Linear)". The name is searched for in the subtree of the module running now, so it
// is the full dotted path even when intermediate modules were run through forward(); when `m`
// is not found there (or nothing runs yet), `name_in_parent` is used (empty: type only). Off
// anomaly mode it does nothing.
class ModuleCallScope {
 public:
  explicit ModuleCallScope(const Module& m, const std::string& name_in_parent = "");
  ~ModuleCallScope();
  ModuleCallScope(const ModuleCallScope&) = delete;
  ModuleCallScope& operator=(const ModuleCallScope&) = delete;

 private:
  bool active_ = false;
  const Module* prev_ = nullptr;
  std::unique_ptr<autograd::ModulePathScope> path_;
};

// Declares clone() for a copyable module class.
#define PEFT_MODULE_CLONE(Class) \
  ::peft::nn::ModulePtr clone() const override { return clone_as<Class>(*this); }

// Python's repr() of a float ("0.0", "0.5", "1e-05"), so extra_repr() prints numbers as
// PyTorch's print(model) does.
std::string float_repr(double v);

}  // namespace peft::nn
