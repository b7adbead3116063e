#include "layers/hf_conv1d.h"

#include "core/ops.h"
#include "layers/init.h"

namespace peft::nn {

Conv1D::Conv1D(int64_t nf, int64_t nx, DType dtype) : nf_(nf), nx_(nx) {
  PEFT_CHECK(nf >= 0 && nx >= 0, "Conv1D: sizes must be non-negative, got nf=", nf, " nx=", nx);
  Tensor w = Tensor::empty({nx, nf}, dtype);
  init::normal_(w, 0.0, 0.02);
  register_parameter("weight", w);
  Tensor b = Tensor::empty({nf}, dtype);
  init::zeros_(b);
  register_parameter("bias", b);
}

Tensor Conv1D::forward(const Tensor& x) {
  PEFT_CHECK(x.dim() >= 1 && x.size(-1) == nx_, "Conv1D: input has ", x.dim() ? x.size(-1) : 0, " features (shape ",
             shape_str(x.shape()), "), expected nx=", nx_);
  // linear() takes W as (out, in); the transposed view costs nothing and keeps the one GEMM
  // path (and its backward) every Linear uses.
  return linear(x, param("weight").t(), param("bias"));
}

std::string Conv1D::extra_repr() const { return "nf=" + std::to_string(nf_) + ", nx=" + std::to_string(nx_); }

}  // namespace peft::nn
