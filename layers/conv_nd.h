// Conv1d and Conv3d layers (PyTorch's nn.Conv1d / nn.Conv3d): parameters "weight"
// (out, in/groups, *kernel) and "bias" (out), over the conv1d / conv3d ops. Both share ConvNd,
// which keeps one kernel / stride / padding / dilation value per spatial dimension, so code that
// works on "any convolution but Conv2d" (adapters/lora_conv_nd.h) needs one type. Conv2d keeps
// its own class (layers/conv.h), which predates these and which other code matches exactly.
#pragma once
#include <string>
#include <vector>

#include "core/ops.h"
#include "layers/module.h"

namespace peft::nn {

// stride / padding / dilation: empty → 1 / 0 / 1, one value → every dimension, else one per dimension.
struct ConvNdConfig {
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
  bool bias = true;
  // Only "zeros": "reflect", "replicate" and "circular" are refused by name.
  std::string padding_mode = "zeros";
};

class ConvNd : public Module {
 public:
  // weight and bias U(±1/√fan_in) as PyTorch (kaiming_uniform(a=√5)), fan_in = in/groups·Πkernel.
  ConvNd(int64_t spatial_dims, int64_t in_channels, int64_t out_channels, std::vector<int64_t> kernel_size,
         const ConvNdConfig& cfg, DType dtype);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  int64_t spatial_dims() const { return dims_; }
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  const std::vector<int64_t>& kernel_size() const { return kernel_; }
  // With stride / padding / dilation expanded to one value per dimension.
  const ConvNdConfig& config() const { return cfg_; }
  ConvNdOptions options() const;
  Tensor bias() const { return has_param("bias") ? param("bias") : Tensor(); }

 private:
  int64_t dims_, in_, out_;
  std::vector<int64_t> kernel_;
  ConvNdConfig cfg_;
};

class Conv1d : public ConvNd {
 public:
  PEFT_MODULE_CLONE(Conv1d)
  Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, const ConvNdConfig& cfg = {},
         DType dtype = DType::F32)
      : ConvNd(1, in_channels, out_channels, {kernel_size}, cfg, dtype) {}
  std::string type_name() const override { return "Conv1d"; }
};

class Conv3d : public ConvNd {
 public:
  PEFT_MODULE_CLONE(Conv3d)
  // kernel_size: one value (a cube) or three (kd, kh, kw).
  Conv3d(int64_t in_channels, int64_t out_channels, std::vector<int64_t> kernel_size, const ConvNdConfig& cfg = {},
         DType dtype = DType::F32)
      : ConvNd(3, in_channels, out_channels, std::move(kernel_size), cfg, dtype) {}
  Conv3d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, const ConvNdConfig& cfg = {},
         DType dtype = DType::F32)
      : Conv3d(in_channels, out_channels, std::vector<int64_t>{kernel_size}, cfg, dtype) {}
  std::string type_name() const override { return "Conv3d"; }
};

}  // namespace peft::nn
