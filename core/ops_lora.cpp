// lora_linear: the base product and the low-rank branch in one op. Forward writes y once:
// y = b, y += x·Wᵀ, y += (s·u)·Bᵀ with u = dropout(x)·Aᵀ (all GEMMs accumulate into y).
// Backward shares dU = s·dY·B between dA and dX and accumulates the low-rank term straight
// into dX's GEMM output when there is no dropout; W's gradient is skipped when W is frozen.
// On CUDA the same chain runs through cuBLAS (the fused lora_*.cu kernels are a later step).
// Dropout's mask here comes from the Generator's uniform stream on the host; CUDA dropout masks
// are Philox (regenerated, never stored), so until this op switches to Philox on both devices,
// CUDA lora_linear refuses dropout in training rather than copy a host mask to the device.
#include <optional>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/random.h"

namespace peft {

Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B, double scale,
                   double dropout_p, bool training, Generator* gen) {
  detail::check_float_inputs_any_device("lora_linear", {&x, &w, &b, &A, &B});
  PEFT_CHECK(w.dim() == 2, "lora_linear: weight must be 2-D (out, in), got ", shape_str(w.shape()));
  const int64_t out_f = w.shape()[0], in_f = w.shape()[1];
  PEFT_CHECK(x.dim() >= 1 && x.shape().back() == in_f, "lora_linear: input has ", x.dim() ? x.shape().back() : 0,
             " features (shape ", shape_str(x.shape()), "), expected ", in_f);
  PEFT_CHECK(A.dim() == 2 && A.shape()[1] == in_f, "lora_linear: lora_A must be (r, ", in_f, "), got ", shape_str(A.shape()));
  const int64_t r = A.shape()[0];
  PEFT_CHECK(B.dim() == 2 && B.shape()[0] == out_f && B.shape()[1] == r, "lora_linear: lora_B must be (", out_f, ", ", r,
             "), got ", shape_str(B.shape()));
  PEFT_CHECK(!b.defined() || (b.dim() == 1 && b.shape()[0] == out_f), "lora_linear: bias shape ", shape_str(b.shape()),
             " does not match ", out_f, " output features");
  PEFT_CHECK(dropout_p >= 0 && dropout_p < 1, "lora_linear: dropout probability must be in [0, 1), got ", dropout_p);
  PEFT_CHECK(!(x.device().is_cuda() && training && dropout_p > 0), "lora_linear: dropout (p = ", dropout_p,
             ") in training is not implemented on ", x.device().str(), " yet (its CPU mask comes from the Generator's "
             "host stream); use lora_dropout = 0 on CUDA, or train on the CPU");

  std::optional<NoGradGuard> no_grad(std::in_place);  // released before recording
  Tensor x2 = detail::contiguous_detached(x.reshape({-1, in_f}));
  const int64_t M = x2.shape()[0];
  Tensor mask, xd = x2;
  if (training && dropout_p > 0) {
    Generator& g = gen ? *gen : default_generator();
    mask = Tensor::empty(x2.shape(), x2.dtype());
    const double keep_scale = 1.0 / (1.0 - dropout_p);
    std::vector<double> m(static_cast<size_t>(mask.numel()));
    for (auto& v : m) v = g.uniform() < dropout_p ? 0.0 : keep_scale;
    mask.copy_(Tensor::from_vector(m, mask.shape()));
    xd = mul(x2, mask);
  }
  Tensor Ad = A.detach(), Bd = B.detach(), Wd = w.detach();
  Tensor u = detail::mm_raw(xd, Ad.t());  // (M, r)
  Tensor y = Tensor::empty({M, out_f}, x.dtype(), x.device());
  if (b.defined()) y.copy_(b.detach());
  else y.zero_();
  if (in_f > 0) detail::gemm_into(x2, Wd.t(), y, 1.0);
  if (r > 0) detail::gemm_into(mul(u, scale), Bd.t(), y, 1.0);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_f);
  Tensor out = y.view(out_shape);

  const bool gx = x.requires_grad(), gw = w.requires_grad(), gb = b.defined() && b.requires_grad();
  const bool gA = A.requires_grad(), gB = B.requires_grad();
  Tensor x_for_dw = gw ? x2 : Tensor(), xd_for_dA = gA ? xd : Tensor(), u_for_dB = gB ? u : Tensor();
  Shape x_shape = x.shape();
  no_grad.reset();
  {
    autograd::record("LoraLinearBackward", {x, w, b, A, B}, {out},
                     [=](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
                       Tensor g2 = detail::contiguous_detached(grads[0].reshape({-1, out_f}));
                       Tensor dx, dw, db, dA, dB;
                       if (gB) dB = mul(detail::mm_raw(g2.t(), u_for_dB), scale);
                       Tensor dU = (gA || gx) ? mul(detail::mm_raw(g2, Bd), scale) : Tensor();  // (M, r)
                       if (gA) dA = detail::mm_raw(dU.t(), xd_for_dA);
                       if (gx) {
                         dx = detail::mm_raw(g2, Wd);
                         if (mask.defined()) dx.add_(mul(detail::mm_raw(dU, Ad), mask));
                         else if (r > 0) detail::gemm_into(dU, Ad, dx, 1.0);
                         dx = dx.view(x_shape);
                       }
                       if (gw) dw = detail::mm_raw(g2.t(), x_for_dw);
                       if (gb) db = sum(g2, {0});
                       return {dx, dw, db, dA, dB};
                     });
  }
  return out;
}

}  // namespace peft
