// GroupNorm, LayerNorm, timm's channels-first LayerNorm2d (normalises over C of NCHW), and
// transformers' RMSNorm (LlamaRMSNorm and its copies).
#pragma once
#include "layers/module.h"

namespace peft::nn {

class GroupNorm : public Module {
 public:
  PEFT_MODULE_CLONE(GroupNorm)
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true, DType dtype = DType::F32);
  std::string type_name() const override { return "GroupNorm"; }
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  int64_t groups_, channels_;
  double eps_;
  bool affine_;
};

class LayerNorm : public Module {
 public:
  PEFT_MODULE_CLONE(LayerNorm)
  LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true, DType dtype = DType::F32);
  LayerNorm(int64_t normalized, double eps = 1e-5, bool elementwise_affine = true, DType dtype = DType::F32)
      : LayerNorm(Shape{normalized}, eps, elementwise_affine, dtype) {}
  std::string type_name() const override { return "LayerNorm"; }
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 protected:
  Shape shape_;
  double eps_;
  bool affine_;
};

// timm.layers.LayerNorm2d: LayerNorm over the channel dim of (N, C, H, W).
class LayerNorm2d : public LayerNorm {
 public:
  PEFT_MODULE_CLONE(LayerNorm2d)
  explicit LayerNorm2d(int64_t num_channels, double eps = 1e-6, bool affine = true, DType dtype = DType::F32)
      : LayerNorm(num_channels, eps, affine, dtype) {}
  std::string type_name() const override { return "LayerNorm2d"; }
  Tensor forward(const Tensor& x) override;
};

// y = weight · x / sqrt(mean(x², last dim) + eps), statistics in F32 (rms_norm in core/ops.h).
// weight starts at 1. `type` is the class name printed ("LlamaRMSNorm", "Qwen2RMSNorm", ...).
class RMSNorm : public Module {
 public:
  PEFT_MODULE_CLONE(RMSNorm)
  RMSNorm(int64_t hidden_size, double eps = 1e-6, std::string type = "RMSNorm", DType dtype = DType::F32);
  std::string type_name() const override { return type_; }
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  int64_t size_;
  double eps_;
  std::string type_;
};

}  // namespace peft::nn
