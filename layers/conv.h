// Conv2d and 2-D pooling layers.
#pragma once
#include "core/ops.h"
#include "layers/module.h"

namespace peft::nn {

struct Conv2dConfig {
  std::pair<int64_t, int64_t> stride{1, 1}, padding{0, 0}, dilation{1, 1};
  int64_t groups = 1;
  bool bias = true;
};

// weight (out, in/groups, kh, kw), bias (out): U(±1/√fan_in), fan_in = in/groups·kh·kw.
class Conv2d : public Module {
 public:
  PEFT_MODULE_CLONE(Conv2d)
  Conv2d(int64_t in_channels, int64_t out_channels, std::pair<int64_t, int64_t> kernel_size,
         const Conv2dConfig& cfg = {}, DType dtype = DType::F32);
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, const Conv2dConfig& cfg = {},
         DType dtype = DType::F32)
      : Conv2d(in_channels, out_channels, {kernel_size, kernel_size}, cfg, dtype) {}
  std::string type_name() const override { return "Conv2d"; }
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  std::pair<int64_t, int64_t> kernel_size() const { return kernel_; }
  const Conv2dConfig& config() const { return cfg_; }
  Conv2dOptions options() const;
  Tensor bias() const { return has_param("bias") ? param("bias") : Tensor(); }

 private:
  int64_t in_, out_;
  std::pair<int64_t, int64_t> kernel_;
  Conv2dConfig cfg_;
};

class AvgPool2d : public Module {
 public:
  PEFT_MODULE_CLONE(AvgPool2d)
  explicit AvgPool2d(const AvgPool2dOptions& opt) : opt_(opt) {}
  AvgPool2d(int64_t kernel, int64_t stride, int64_t padding = 0, bool ceil_mode = false, bool count_include_pad = true);
  std::string type_name() const override { return "AvgPool2d"; }
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, opt_); }
  std::string extra_repr() const override;

 private:
  AvgPool2dOptions opt_;
};

class AdaptiveAvgPool2d : public Module {
 public:
  PEFT_MODULE_CLONE(AdaptiveAvgPool2d)
  explicit AdaptiveAvgPool2d(int64_t output_size = 1);
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, {out_, out_}); }
  std::string extra_repr() const override { return "output_size=" + std::to_string(out_); }

 private:
  int64_t out_;
};

}  // namespace peft::nn
