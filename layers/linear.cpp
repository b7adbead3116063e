#include "layers/linear.h"

#include <cmath>

#include "core/ops.h"
#include "layers/init.h"

namespace peft::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, DType dtype)
    : in_features_(in_features), out_features_(out_features) {
  PEFT_CHECK(in_features >= 0 && out_features >= 0, "Linear: feature counts must be non-negative, got in=", in_features,
             " out=", out_features);
  Tensor w = Tensor::empty({out_features, in_features}, dtype);
  init::kaiming_uniform_(w, std::sqrt(5.0));
  register_parameter("weight", w);
  if (bias) {
    Tensor b = Tensor::empty({out_features}, dtype);
    const double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0;
    init::uniform_(b, -bound, bound);
    register_parameter("bias", b);
  }
}

Tensor Linear::forward(const Tensor& x) {
  PEFT_CHECK(x.dim() >= 1 && x.size(-1) == in_features_, "Linear: input has ", x.dim() ? x.size(-1) : 0,
             " features (shape ", shape_str(x.shape()), "), expected ", in_features_);
  return linear(x, param("weight"), bias());
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(in_features_) + ", out_features=" + std::to_string(out_features_) +
         ", bias=" + (has_param("bias") ? "True" : "False");
}

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_) + ", end_dim=" + std::to_string(end_);
}

}  // namespace peft::nn
