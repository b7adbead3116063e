#include "layers/conv.h"

#include <cmath>

#include "layers/init.h"

namespace peft::nn {

namespace {
std::string pair_str(std::pair<int64_t, int64_t> p) {
  return "(" + std::to_string(p.first) + ", " + std::to_string(p.second) + ")";
}
}  // namespace

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, std::pair<int64_t, int64_t> kernel_size,
               const Conv2dConfig& cfg, DType dtype)
    : in_(in_channels), out_(out_channels), kernel_(kernel_size), cfg_(cfg) {
  PEFT_CHECK(cfg.groups >= 1 && in_channels % cfg.groups == 0, "Conv2d: in_channels (", in_channels,
             ") must be divisible by groups (", cfg.groups, ")");
  PEFT_CHECK(out_channels % cfg.groups == 0, "Conv2d: out_channels (", out_channels, ") must be divisible by groups (",
             cfg.groups, ")");
  PEFT_CHECK(kernel_size.first > 0 && kernel_size.second > 0, "Conv2d: kernel size must be positive, got ",
             pair_str(kernel_size));
  Tensor w = Tensor::empty({out_channels, in_channels / cfg.groups, kernel_size.first, kernel_size.second}, dtype);
  init::kaiming_uniform_(w, std::sqrt(5.0));
  register_parameter("weight", w);
  if (cfg.bias) {
    Tensor b = Tensor::empty({out_channels}, dtype);
    const double fan_in = static_cast<double>(init::fan_in_and_fan_out(w).first);
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(fan_in) : 0.0;
    init::uniform_(b, -bound, bound);
    register_parameter("bias", b);
  }
}

Conv2dOptions Conv2d::options() const {
  Conv2dOptions o;
  o.stride = cfg_.stride;
  o.padding = cfg_.padding;
  o.dilation = cfg_.dilation;
  o.groups = cfg_.groups;
  return o;
}

Tensor Conv2d::forward(const Tensor& x) {
  PEFT_CHECK(x.dim() == 4 && x.size(1) == in_, "Conv2d: expected input (N, ", in_, ", H, W), got ", shape_str(x.shape()));
  return conv2d(x, param("weight"), bias(), options());
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(in_) + ", " + std::to_string(out_) + ", kernel_size=" + pair_str(kernel_) +
                  ", stride=" + pair_str(cfg_.stride);
  if (cfg_.padding != std::make_pair<int64_t, int64_t>(0, 0)) s += ", padding=" + pair_str(cfg_.padding);
  if (cfg_.dilation != std::make_pair<int64_t, int64_t>(1, 1)) s += ", dilation=" + pair_str(cfg_.dilation);
  if (cfg_.groups != 1) s += ", groups=" + std::to_string(cfg_.groups);
  if (!cfg_.bias) s += ", bias=False";
  return s;
}

AvgPool2d::AvgPool2d(int64_t kernel, int64_t stride, int64_t padding, bool ceil_mode, bool count_include_pad) {
  opt_.kernel = {kernel, kernel};
  opt_.stride = {stride, stride};
  opt_.padding = {padding, padding};
  opt_.ceil_mode = ceil_mode;
  opt_.count_include_pad = count_include_pad;
}

std::string AvgPool2d::extra_repr() const {
  auto one = [](std::pair<int64_t, int64_t> p) {
    return p.first == p.second ? std::to_string(p.first) : pair_str(p);
  };
  // Stride 0 means "= kernel" (PyTorch's stride=None), which PyTorch prints as the kernel size.
  const std::pair<int64_t, int64_t> stride{opt_.stride.first ? opt_.stride.first : opt_.kernel.first,
                                           opt_.stride.second ? opt_.stride.second : opt_.kernel.second};
  return "kernel_size=" + one(opt_.kernel) + ", stride=" + one(stride) + ", padding=" + one(opt_.padding);
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t output_size) : out_(output_size) {
  PEFT_CHECK(output_size == 1, "AdaptiveAvgPool2d: only output_size 1 is supported, got ", output_size);
}

}  // namespace peft::nn
