// lora_linear: the base product and the low-rank branch in one op. Forward writes y once:
// y = b, y += x·Wᵀ, y += (s·u)·Bᵀ with u = dropout(x)·Aᵀ (all GEMMs accumulate into y).
// Backward shares dU = s·dY·B between dA and dX and accumulates the low-rank term straight
// into dX's GEMM output when there is no dropout; W's gradient is skipped when W is frozen.
// On CUDA the path is cuda::lora_path() (core/cuda_api.h): Auto (the default) runs
// core/ops_lora_fast.cpp (cuBLASLt epilogues, merged W' = W + s·B·A where it is cheaper); Wmma the
// hand-written tensor-core kernels (lora_linear_fused below, kernels/cuda/lora_fused.cu) for BF16
// and TF32; Chain (and F64 everywhere) the same chain as the CPU, through cuBLAS.
// Dropout's mask: on the CPU it comes from the Generator's uniform stream, one draw per element
// (the LoRA dropout goldens replay that stream). On CUDA it is Philox (kernels/cuda/dropout.cuh)
// from one 64-bit seed drawn from the Generator, as in peft::dropout: backward regenerates the
// mask from (seed, offset 0) instead of keeping it. So under one manual_seed the two devices drop
// different elements, like peft::dropout; dropout(x) itself is still kept for dA when A trains.
#include <optional>

#include "core/autograd.h"
#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "core/random.h"

namespace peft {

namespace {
// PEFT's LoRA Linear when the adapters' dtype differs from the base layer's (autocast_adapter_dtype:
// a BF16 / F16 base with F32 adapters): the base output stays in the base dtype, the input is cast
// to the adapters' dtype for the low-rank branch, the two are added in the promoted dtype and the
// sum is cast back to the base dtype (`result + lora_B(lora_A(dropout(x))) * scaling`, then
// `result.to(torch_result_dtype)`). Composed of ops: their kernels and autograd do the rest.
Tensor lora_linear_mixed(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B,
                         double scale, double dropout_p, bool training, Generator* gen) {
  Tensor base = linear(x, w, b);
  Tensor h = dropout(x.to(A.dtype()), dropout_p, training, gen);
  Tensor low = mul(linear(linear(h, A), B), scale);
  const DType pt = promote_float_types(base.dtype(), low.dtype());
  return add(base.to(pt), low.to(pt)).to(x.dtype());
}

bool use_fused_kernels(const Tensor& x) {
  return x.device().is_cuda() && cuda::lora_path() == cuda::LoraCudaPath::Wmma &&
         (x.dtype() == DType::BF16 || (x.dtype() == DType::F32 && cuda::allow_tf32()));
}

// Auto's fast path takes x in F32 / BF16 with adapters in x's dtype, or F32 adapters on a BF16
// base (autocast_adapter_dtype). F16 stays on the composed paths: the CUDA elementwise kernels
// (dropout, the bias gradient's sum) have no F16 version.
bool use_fast_path(const Tensor& x, const Tensor& A) {
  if (!x.device().is_cuda() || cuda::lora_path() != cuda::LoraCudaPath::Auto) return false;
  if (x.dtype() != DType::F32 && x.dtype() != DType::BF16) return false;
  return A.dtype() == x.dtype() || (A.dtype() == DType::F32 && x.dtype() == DType::BF16);
}

// The fused CUDA path (x, W, b, A, B of one dtype, checked by the caller): two kernels forward,
// up to four backward; nothing of the dropout is stored — the Philox seed is, and every kernel
// that needs the mask regenerates it. Saved for backward: W, A, B (always), us = s·dropout(x)·Aᵀ
// (in x's dtype) when B trains, x when A or W trains.
Tensor lora_linear_fused(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B,
                         double scale, double dropout_p, bool training, Generator* gen) {
  const int64_t out_f = w.shape()[0], in_f = w.shape()[1], r = A.shape()[0];
  const DType dt = x.dtype();
  const Device dev = x.device();
  std::optional<NoGradGuard> no_grad(std::in_place);  // released before recording
  Tensor x2 = detail::contiguous_detached(x.reshape({-1, in_f}));
  const int64_t M = x2.shape()[0];
  const double p = training ? dropout_p : 0.0;
  const uint64_t seed = p > 0 ? (gen ? *gen : default_generator()).next_u64() : 0;
  Tensor Wd = detail::contiguous_detached(w), Ad = detail::contiguous_detached(A);
  Tensor Bd = detail::contiguous_detached(B), bd = b.defined() ? detail::contiguous_detached(b) : Tensor();
  Tensor us = Tensor::empty({M, r}, dt, dev);
  Tensor y = Tensor::empty({M, out_f}, dt, dev);
  cuda_ops::lora_fused_forward(M, in_f, out_f, r, x2.raw_data(), Wd.raw_data(), detail::ptr_or_null(bd),
                               Ad.raw_data(), Bd.raw_data(), scale, p, seed, us.raw_data(), y.raw_data(), dt, dev);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_f);
  Tensor out = y.view(out_shape);

  const bool gx = x.requires_grad(), gw = w.requires_grad(), gb = b.defined() && b.requires_grad();
  const bool gA = A.requires_grad(), gB = B.requires_grad();
  Tensor x_keep = (gA || gw) ? x2 : Tensor(), us_keep = gB ? us : Tensor();
  Shape x_shape = x.shape();
  no_grad.reset();
  autograd::record("LoraLinearBackward", {x, w, b, A, B}, {out},
                   [=](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
                     Tensor g2 = detail::contiguous_detached(grads[0].reshape({-1, out_f}).to(dt));
                     Tensor dx, dw, db, dA, dB, dU;
                     if (gx) dx = Tensor::empty({M, in_f}, dt, dev);
                     if (gA) dA = Tensor::empty({r, in_f}, dt, dev);
                     if (gB) dB = Tensor::empty({out_f, r}, dt, dev);
                     if (gA || gx) dU = Tensor::empty({M, r}, dt, dev);
                     cuda_ops::lora_fused_backward(M, in_f, out_f, r, g2.raw_data(), detail::ptr_or_null(x_keep),
                                                   Wd.raw_data(), Ad.raw_data(), Bd.raw_data(),
                                                   detail::ptr_or_null(us_keep), scale, p, seed,
                                                   detail::ptr_or_null(dU), detail::ptr_or_null(dx),
                                                   detail::ptr_or_null(dA), detail::ptr_or_null(dB), dt, dev);
                     if (gw) dw = detail::mm_raw(g2.t(), x_keep);
                     if (gb) db = sum(g2, {0});
                     if (gx) dx = dx.view(x_shape);
                     return {dx, dw, db, dA, dB};
                   });
  return out;
}
}  // namespace

Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B, double scale,
                   double dropout_p, bool training, Generator* gen) {
  PEFT_PROFILE_OP("lora_linear", x);
  // x, W, b share a dtype; A, B share theirs, which may differ (see lora_linear_mixed).
  detail::check_float_inputs_any_device("lora_linear", {&x, &w, &b});
  detail::check_float_inputs_any_device("lora_linear", {&A, &B});
  PEFT_CHECK(A.device() == x.device(), "lora_linear: expected all tensors on the same device, got ", x.device().str(),
             " (input) and ", A.device().str(), " (lora_A)");
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
  if (use_fast_path(x, A)) return detail::lora_linear_fast(x, w, b, A, B, scale, dropout_p, training, gen);
  if (A.dtype() != x.dtype()) return lora_linear_mixed(x, w, b, A, B, scale, dropout_p, training, gen);
  if (use_fused_kernels(x)) return lora_linear_fused(x, w, b, A, B, scale, dropout_p, training, gen);

  std::optional<NoGradGuard> no_grad(std::in_place);  // released before recording
  Tensor x2 = detail::contiguous_detached(x.reshape({-1, in_f}));
  const int64_t M = x2.shape()[0];
  Tensor mask, xd = x2;
  const bool philox = training && dropout_p > 0 && x.device().is_cuda();
  uint64_t philox_seed = 0;
  if (philox) {
    philox_seed = (gen ? *gen : default_generator()).next_u64();
    xd = Tensor::empty(x2.shape(), x2.dtype(), x2.device());
    cuda_ops::dropout_forward(x2.numel(), dropout_p, philox_seed, 0, x2.raw_data(), xd.raw_data(), x2.dtype(),
                              x2.device());
  } else if (training && dropout_p > 0) {
    Generator& g = gen ? *gen : default_generator();
    mask = Tensor::empty(x2.shape(), x2.dtype(), Device::cpu());
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
                         if (mask.defined()) {
                           dx.add_(mul(detail::mm_raw(dU, Ad), mask));
                         } else if (philox) {  // the forward's mask, regenerated
                           Tensor t = detail::mm_raw(dU, Ad);
                           cuda_ops::dropout_backward(t.numel(), dropout_p, philox_seed, 0, t.raw_data(), t.raw_data(),
                                                      t.dtype(), t.device());
                           dx.add_(t);
                         } else if (r > 0) {
                           detail::gemm_into(dU, Ad, dx, 1.0);
                         }
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
