// Optimizers with PyTorch's update formulas (torch.optim.SGD / Adam / AdamW, non-foreach,
// amsgrad off). Each step is one fused loop per parameter over raw memory. Parameters
// without a gradient are skipped, as in PyTorch.
#pragma once
#include <map>
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

}  // namespace peft::optim
