#include "layers/conv_nd.h"

#include <cmath>

#include "layers/init.h"

namespace peft::nn {

namespace {
// Python's tuple repr, as PyTorch prints these fields: "(3,)" and "(1, 2, 2)".
std::string tuple_str(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

std::vector<int64_t> expand(const std::vector<int64_t>& v, int64_t dims, int64_t dflt, const char* layer,
                            const char* what) {
  if (v.empty()) return std::vector<int64_t>(static_cast<size_t>(dims), dflt);
  if (v.size() == 1) return std::vector<int64_t>(static_cast<size_t>(dims), v[0]);
  PEFT_CHECK(static_cast<int64_t>(v.size()) == dims, layer, ": ", what, " needs 1 or ", dims, " values, got ",
             tuple_str(v));
  return v;
}
}  // namespace

ConvNd::ConvNd(int64_t spatial_dims, int64_t in_channels, int64_t out_channels, std::vector<int64_t> kernel_size,
               const ConvNdConfig& cfg, DType dtype)
    : dims_(spatial_dims), in_(in_channels), out_(out_channels), cfg_(cfg) {
  const std::string name = "Conv" + std::to_string(spatial_dims) + "d";
  const char* n = name.c_str();
  PEFT_CHECK(spatial_dims == 1 || spatial_dims == 3, "ConvNd: only 1 or 3 spatial dimensions here (Conv2d is "
             "nn::Conv2d), got ", spatial_dims);
  // PyTorch's other modes pad by reflection / replication / wrapping, which conv1d / conv3d do not do.
  PEFT_CHECK(cfg.padding_mode == "zeros", name, ": padding_mode '", cfg.padding_mode, "' is not supported (only "
             "'zeros'; 'reflect', 'replicate' and 'circular' are not implemented)");
  PEFT_CHECK(cfg.groups >= 1 && in_channels % cfg.groups == 0, name, ": in_channels (", in_channels,
             ") must be divisible by groups (", cfg.groups, ")");
  PEFT_CHECK(out_channels % cfg.groups == 0, name, ": out_channels (", out_channels, ") must be divisible by groups (",
             cfg.groups, ")");
  kernel_ = expand(kernel_size, dims_, 1, n, "kernel_size");
  cfg_.stride = expand(cfg.stride, dims_, 1, n, "stride");
  cfg_.padding = expand(cfg.padding, dims_, 0, n, "padding");
  cfg_.dilation = expand(cfg.dilation, dims_, 1, n, "dilation");
  for (int64_t i = 0; i < dims_; ++i) {
    const size_t d = static_cast<size_t>(i);
    PEFT_CHECK(kernel_[d] > 0, name, ": kernel size must be positive, got ", tuple_str(kernel_));
    PEFT_CHECK(cfg_.stride[d] > 0 && cfg_.dilation[d] > 0 && cfg_.padding[d] >= 0, name,
               ": stride and dilation must be positive and padding non-negative, got stride ", tuple_str(cfg_.stride),
               ", padding ", tuple_str(cfg_.padding), ", dilation ", tuple_str(cfg_.dilation));
  }
  Shape ws{out_channels, in_channels / cfg.groups};
  ws.insert(ws.end(), kernel_.begin(), kernel_.end());
  Tensor w = Tensor::empty(ws, dtype);
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

ConvNdOptions ConvNd::options() const {
  ConvNdOptions o;
  o.stride = cfg_.stride;
  o.padding = cfg_.padding;
  o.dilation = cfg_.dilation;
  o.groups = cfg_.groups;
  return o;
}

Tensor ConvNd::forward(const Tensor& x_in) {
  // PyTorch also takes an unbatched input (C, ...) and returns an unbatched output.
  const bool unbatched = x_in.dim() == dims_ + 1;
  Tensor x = unbatched ? x_in.unsqueeze(0) : x_in;
  const std::string dims_text = dims_ == 1 ? "L" : "D, H, W";
  PEFT_CHECK(x.dim() == dims_ + 2 && x.size(1) == in_, type_name(), ": expected input (N, ", in_, ", ", dims_text,
             ") or (", in_, ", ", dims_text, "), got ", shape_str(x_in.shape()));
  Tensor y = dims_ == 1 ? conv1d(x, param("weight"), bias(), options()) : conv3d(x, param("weight"), bias(), options());
  return unbatched ? y.squeeze(0) : y;
}

std::string ConvNd::extra_repr() const {
  std::string s = std::to_string(in_) + ", " + std::to_string(out_) + ", kernel_size=" + tuple_str(kernel_) +
                  ", stride=" + tuple_str(cfg_.stride);
  const size_t d = static_cast<size_t>(dims_);
  if (cfg_.padding != std::vector<int64_t>(d, 0)) s += ", padding=" + tuple_str(cfg_.padding);
  if (cfg_.dilation != std::vector<int64_t>(d, 1)) s += ", dilation=" + tuple_str(cfg_.dilation);
  if (cfg_.groups != 1) s += ", groups=" + std::to_string(cfg_.groups);
  if (!cfg_.bias) s += ", bias=False";
  return s;
}

}  // namespace peft::nn
