// Parameter-free layers: activations, softmax, dropout.
#pragma once
#include "core/ops.h"
#include "layers/module.h"

namespace peft::nn {

class ReLU : public Module {
 public:
  PEFT_MODULE_CLONE(ReLU)
  std::string type_name() const override { return "ReLU"; }
  Tensor forward(const Tensor& x) override { return relu(x); }
};

class GELU : public Module {
 public:
  PEFT_MODULE_CLONE(GELU)
  explicit GELU(std::string approximate = "none");
  std::string type_name() const override { return "GELU"; }
  Tensor forward(const Tensor& x) override { return gelu(x, approximate_); }
  std::string extra_repr() const override { return "approximate='" + approximate_ + "'"; }

 private:
  std::string approximate_;
};

class Sigmoid : public Module {
 public:
  PEFT_MODULE_CLONE(Sigmoid)
  std::string type_name() const override { return "Sigmoid"; }
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};

class Tanh : public Module {
 public:
  PEFT_MODULE_CLONE(Tanh)
  std::string type_name() const override { return "Tanh"; }
  Tensor forward(const Tensor& x) override { return tanh(x); }
};

class Softmax : public Module {
 public:
  PEFT_MODULE_CLONE(Softmax)
  explicit Softmax(int64_t dim) : dim_(dim) {}
  std::string type_name() const override { return "Softmax"; }
  Tensor forward(const Tensor& x) override { return softmax(x, dim_); }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim_); }

 private:
  int64_t dim_;
};

class LogSoftmax : public Module {
 public:
  PEFT_MODULE_CLONE(LogSoftmax)
  explicit LogSoftmax(int64_t dim) : dim_(dim) {}
  std::string type_name() const override { return "LogSoftmax"; }
  Tensor forward(const Tensor& x) override { return log_softmax(x, dim_); }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim_); }

 private:
  int64_t dim_;
};

// Active in training mode only; draws its mask from `generator` (default: the global one).
class Dropout : public Module {
 public:
  PEFT_MODULE_CLONE(Dropout)
  explicit Dropout(double p = 0.5);
  std::string type_name() const override { return "Dropout"; }
  Tensor forward(const Tensor& x) override { return dropout(x, p_, is_training(), generator_); }
  std::string extra_repr() const override;
  double p() const { return p_; }
  void set_generator(Generator* g) { generator_ = g; }

 private:
  double p_;
  Generator* generator_ = nullptr;
};

}  // namespace peft::nn
