#include "layers/norm.h"

#include "core/ops.h"
#include "layers/init.h"

namespace peft::nn {

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine, DType dtype)
    : groups_(num_groups), channels_(num_channels), eps_(eps), affine_(affine) {
  PEFT_CHECK(num_groups > 0 && num_channels % num_groups == 0, "GroupNorm: num_channels (", num_channels,
             ") must be divisible by num_groups (", num_groups, ")");
  if (affine) {
    register_parameter("weight", Tensor::ones({num_channels}, dtype));
    register_parameter("bias", Tensor::zeros({num_channels}, dtype));
  }
}

Tensor GroupNorm::forward(const Tensor& x) {
  PEFT_CHECK(x.dim() >= 2 && x.size(1) == channels_, "GroupNorm: expected input (N, ", channels_, ", *), got ",
             shape_str(x.shape()));
  return group_norm(x, groups_, affine_ ? param("weight") : Tensor(), affine_ ? param("bias") : Tensor(), eps_);
}

std::string GroupNorm::extra_repr() const {
  return std::to_string(groups_) + ", " + std::to_string(channels_) + ", eps=" + float_repr(eps_) +
         ", affine=" + (affine_ ? "True" : "False");
}

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine, DType dtype)
    : shape_(std::move(normalized_shape)), eps_(eps), affine_(elementwise_affine) {
  PEFT_CHECK(!shape_.empty(), "LayerNorm: normalized_shape must not be empty");
  if (affine_) {
    register_parameter("weight", Tensor::ones(shape_, dtype));
    register_parameter("bias", Tensor::zeros(shape_, dtype));
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  return layer_norm(x, shape_, affine_ ? param("weight") : Tensor(), affine_ ? param("bias") : Tensor(), eps_);
}

std::string LayerNorm::extra_repr() const {
  std::string s = "(";
  for (size_t i = 0; i < shape_.size(); ++i) s += (i ? ", " : "") + std::to_string(shape_[i]);
  if (shape_.size() == 1) s += ",";
  return s + "), eps=" + float_repr(eps_) + ", elementwise_affine=" + (affine_ ? "True" : "False");
}

Tensor LayerNorm2d::forward(const Tensor& x) {
  PEFT_CHECK(x.dim() == 4 && x.size(1) == shape_[0], "LayerNorm2d: expected input (N, ", shape_[0], ", H, W), got ",
             shape_str(x.shape()));
  Tensor y = layer_norm(x.permute({0, 2, 3, 1}), shape_, affine_ ? param("weight") : Tensor(),
                        affine_ ? param("bias") : Tensor(), eps_);
  return y.permute({0, 3, 1, 2});
}

RMSNorm::RMSNorm(int64_t hidden_size, double eps, std::string type, DType dtype)
    : size_(hidden_size), eps_(eps), type_(std::move(type)) {
  PEFT_CHECK(hidden_size > 0, type_, ": hidden_size must be positive, got ", hidden_size);
  register_parameter("weight", Tensor::ones({hidden_size}, dtype));
}

Tensor RMSNorm::forward(const Tensor& x) { return rms_norm(x, param("weight"), eps_); }

// transformers prints LlamaRMSNorm as "(32,), eps=1e-05".
std::string RMSNorm::extra_repr() const { return "(" + std::to_string(size_) + ",), eps=" + float_repr(eps_); }

}  // namespace peft::nn
