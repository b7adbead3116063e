// Linear, Identity, Flatten.
#pragma once
#include "layers/module.h"

namespace peft::nn {

// y = x·Wᵀ + b. weight (out, in), bias (out); both U(±1/√in) as PyTorch.
class Linear : public Module {
 public:
  PEFT_MODULE_CLONE(Linear)
  Linear(int64_t in_features, int64_t out_features, bool bias = true, DType dtype = DType::F32);
  std::string type_name() const override { return "Linear"; }
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  Tensor& weight() { return param("weight"); }
  Tensor bias() const { return has_param("bias") ? param("bias") : Tensor(); }

 private:
  int64_t in_features_, out_features_;
};

class Identity : public Module {
 public:
  PEFT_MODULE_CLONE(Identity)
  std::string type_name() const override { return "Identity"; }
  Tensor forward(const Tensor& x) override { return x; }
};

class Flatten : public Module {
 public:
  PEFT_MODULE_CLONE(Flatten)
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1) : start_(start_dim), end_(end_dim) {}
  std::string type_name() const override { return "Flatten"; }
  Tensor forward(const Tensor& x) override { return x.flatten(start_, end_); }
  std::string extra_repr() const override;

 private:
  int64_t start_, end_;
};

}  // namespace peft::nn
