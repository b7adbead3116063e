// Optimizers with PyTorch's update formulas (torch.optim.SGD / Adam / AdamW, non-foreach,
// amsgrad off). Each step is one fused loop per parameter over raw memory. Parameters
// without a gradient are skipped, as in PyTorch.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peft::optim {

// Flat, name-keyed optimizer state: "<param index>.<field>" → tensor ("0.exp_avg", "0.step").
using OptimizerState = std::map<std::string, Tensor>;

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  // Drops every parameter's gradient (PyTorch's set_to_none=True default).
  void zero_grad();
  const std::vector<Tensor>& params() const { return params_; }
  virtual OptimizerState state_dict() const = 0;
  // Checks every shape first; on error nothing changes.
  virtual void load_state_dict(const OptimizerState& s) = 0;
  virtual double lr() const = 0;
  virtual void set_lr(double lr) = 0;

 protected:
  std::vector<Tensor> params_;
};

struct SGDOptions {
  double lr = 1e-3, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, SGDOptions opt);
  void step() override;
  OptimizerState state_dict() const override;
  void load_state_dict(const OptimizerState& s) override;
  double lr() const override { return opt_.lr; }
  void set_lr(double lr) override { opt_.lr = lr; }

 private:
  SGDOptions opt_;
  std::vector<Tensor> momentum_;  // undefined until the first step with momentum
};

struct AdamOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
};

// Adam (L2 penalty added to the gradient) and, with decoupled = true, AdamW.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, AdamOptions opt);
  void step() override;
  OptimizerState state_dict() const override;
  void load_state_dict(const OptimizerState& s) override;
  double lr() const override { return opt_.lr; }
  void set_lr(double lr) override { opt_.lr = lr; }

 protected:
  Adam(std::vector<Tensor> params, AdamOptions opt, bool decoupled);

 private:
  AdamOptions opt_;
  bool decoupled_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;
  std::vector<int64_t> steps_;
};

struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, AdamWOptions opt);
};

// Mixed precision: F32 master weights for reduced-precision (BF16 / F16) parameters. The wrapped
// optimizer, built by `make` over the masters, updates F32 tensors; each step converts every
// reduced-precision parameter's gradient to F32 into its master's .grad, steps, and writes the
// masters back rounded to nearest even. F32 / F64 parameters are their own masters (the inner
// optimizer sees the parameter itself, no copy). So small updates accumulate in F32 instead of
// vanishing below BF16's 8-bit mantissa, the reason the recipe exists.
//   model->to(DType::BF16); ...
//   optim::MasterWeights opt(model->parameters(), [](std::vector<Tensor> m) {
//     return std::make_unique<optim::AdamW>(std::move(m), optim::AdamWOptions{}); });
class MasterWeights : public Optimizer {
 public:
  using Factory = std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>;
  MasterWeights(std::vector<Tensor> params, const Factory& make);
  void step() override;
  // The inner optimizer's state plus "<i>.master" for every reduced-precision parameter i.
  OptimizerState state_dict() const override;
  // Checks every master's shape and the inner state first (nothing changes on error), then loads
  // both and writes the masters into the parameters.
  void load_state_dict(const OptimizerState& s) override;
  double lr() const override { return inner_->lr(); }
  void set_lr(double lr) override { inner_->set_lr(lr); }
  const std::vector<Tensor>& masters() const { return masters_; }
  Optimizer& inner() { return *inner_; }

 private:
  static bool reduced(DType dt) { return dt == DType::BF16 || dt == DType::F16; }
  bool has_master(size_t i) const { return reduced(dtypes_[i]); }
  std::vector<DType> dtypes_;    // each parameter's dtype at construction (Module::to(DType) is checked against it)
  std::vector<Tensor> masters_;  // masters_[i] is params_[i] itself when it is not reduced
  std::unique_ptr<Optimizer> inner_;
};

}  // namespace peft::optim
