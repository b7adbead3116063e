// lora_linear on CUDA, LoraCudaPath::Auto (core/cuda_api.h): every dense product on cuBLASLt with
// the bias, the beta = 1 accumulation and (for F32 adapters on a BF16 base) the F32 output in its
// epilogue, and the algebra chosen per call by a rule that counts bytes.
//
// Shapes: x (N, in), W (out, in), A (r, in), B (out, r), s the scaling; headline N 8192,
// in = out = 4096, r 16, BF16 (2 B): x, y, dY, dX are 64 MiB each, W 32 MiB.
//
// Merged (no dropout in effect, N·(in + out) > in·out):
//   forward   W' = W + s·B·A          one GEMM, C = W, D = W' (r-deep: reads W, writes W': 64 MiB)
//             y  = x·W'ᵀ + b          one GEMM, bias in the epilogue
//   backward  W' again (not kept: a 32 MiB buffer less at the peak), dX = dY·W' (one GEMM),
//             dU = s·dY·B, u = s·x·Aᵀ (skinny: one read of dY, one of x), dA = dUᵀ·x, dB = dYᵀ·u
//             (K = N: one more read of x and of dY).
//   Extra bytes over a plain Linear: forward 64 MiB (~15 µs at ~4.3 TB/s) against a 0.36 ms GEMM
//   (275 GFLOP at ~770 TFLOP/s): ~4 %; backward 64 + 4·64 MiB (~75 µs) against 0.36 ms: the
//   whole step's tax is ~12 % by bytes at the headline shape, less as r / N shrink relative to it.
//   Rounding: W' is rounded once to W's dtype; the low-rank delta survives it on average (round to
//   nearest over W's spread of values), within the BF16 tolerance of the chain.
// Chain (dropout in effect, or few rows, where W' would cost more than the branch):
//   y = x·Wᵀ + b (bias in the epilogue), u = s·dropout(x)·Aᵀ, y += u·Bᵀ (beta = 1, one
//   read-modify-write of y: 128 MiB), dX = dY·W + (dU·A masked), dA, dB as above.
// The rule N·(in + out) > in·out compares the branch's extra bytes per product (N·(in + out)) with
// the merge's (in·out); spec/performance.md's lora_sweep measures it.
#include <optional>

#include "core/autograd.h"
#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/random.h"

namespace peft::detail {

bool lora_fast_merges(int64_t n_rows, int64_t in_f, int64_t out_f, double dropout_in_effect) {
  return dropout_in_effect == 0.0 && n_rows * (in_f + out_f) > in_f * out_f;
}

namespace {

// d (M, N) = alpha·op(a)·op(b) + beta·c + bias, every operand a contiguous row-major tensor.
void lt(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const Tensor& a, const Tensor& b, double beta,
        const Tensor& c, Tensor& d, const Tensor& bias = Tensor()) {
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  cuda_ops::gemm_fused(ta, tb, M, N, K, alpha, a.raw_data(), std::max<int64_t>(lda, 1), b.raw_data(),
                       std::max<int64_t>(ldb, 1), beta, c.defined() ? c.raw_data() : nullptr, std::max<int64_t>(N, 1),
                       d.raw_data(), std::max<int64_t>(N, 1), bias.defined() ? bias.raw_data() : nullptr, a.dtype(),
                       d.dtype(), d.device());
}

// W' = W + s·B·A in W's dtype (A, B already in it).
Tensor merged_weight(const Tensor& W, const Tensor& A, const Tensor& B, double s) {
  const int64_t out_f = W.shape()[0], in_f = W.shape()[1], r = A.shape()[0];
  Tensor Wm = Tensor::empty({out_f, in_f}, W.dtype(), W.device());
  lt(false, false, out_f, in_f, r, s, B, A, 1.0, W, Wm);
  return Wm;
}

}  // namespace

Tensor lora_linear_fast(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B,
                        double scale, double dropout_p, bool training, Generator* gen) {
  const int64_t out_f = w.shape()[0], in_f = w.shape()[1], r = A.shape()[0];
  const DType dt = x.dtype(), adt = A.dtype();
  const Device dev = x.device();
  std::optional<NoGradGuard> no_grad(std::in_place);  // released before recording
  Tensor x2 = contiguous_detached(x.reshape({-1, in_f}));
  const int64_t M = x2.shape()[0];
  const double p = training ? dropout_p : 0.0;
  const bool merged = lora_fast_merges(M, in_f, out_f, p);
  Tensor Wd = contiguous_detached(w), bd = b.defined() ? contiguous_detached(b) : Tensor();
  // The products run in x's dtype: F32 adapters on a BF16 base are rounded once for them (their
  // gradients still come out in F32, from F32 accumulators).
  Tensor Ac = contiguous_detached(adt == dt ? A : A.to(dt)), Bc = contiguous_detached(adt == dt ? B : B.to(dt));
  Tensor y = Tensor::empty({M, out_f}, dt, dev);
  Tensor xd = x2, u;
  uint64_t seed = 0;
  if (merged) {
    Tensor Wm = merged_weight(Wd, Ac, Bc, scale);
    lt(false, true, M, out_f, in_f, 1.0, x2, Wm, 0.0, Tensor(), y, bd);
  } else {
    if (p > 0) {
      seed = (gen ? *gen : default_generator()).next_u64();
      xd = Tensor::empty(x2.shape(), dt, dev);
      cuda_ops::dropout_forward(x2.numel(), p, seed, 0, x2.raw_data(), xd.raw_data(), dt, dev);
    }
    u = Tensor::empty({M, r}, dt, dev);
    lt(false, true, M, r, in_f, scale, xd, Ac, 0.0, Tensor(), u);       // u = s·dropout(x)·Aᵀ
    lt(false, true, M, out_f, in_f, 1.0, x2, Wd, 0.0, Tensor(), y, bd);  // y = x·Wᵀ + b
    if (r > 0) lt(false, true, M, out_f, r, 1.0, u, Bc, 1.0, y, y);      // y += u·Bᵀ
  }
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_f);
  Tensor out = y.view(out_shape);

  const bool gx = x.requires_grad(), gw = w.requires_grad(), gb = b.defined() && b.requires_grad();
  const bool gA = A.requires_grad(), gB = B.requires_grad();
  Tensor x_keep = (gw || (merged && (gA || gB))) ? x2 : Tensor();
  Tensor xd_keep = (!merged && gA) ? xd : Tensor(), u_keep = (!merged && gB) ? u : Tensor();
  Shape x_shape = x.shape();
  no_grad.reset();
  autograd::record("LoraLinearBackward", {x, w, b, A, B}, {out},
                   [=](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
                     NoGradGuard g;
                     Tensor g2 = contiguous_detached(grads[0].reshape({-1, out_f}).to(dt));
                     Tensor dx, dw, db, dA, dB, dU;
                     const Tensor& xa = merged ? x_keep : xd_keep;  // the input A saw
                     if (gA || (gx && !merged)) {
                       dU = Tensor::empty({M, r}, dt, dev);
                       lt(false, false, M, r, out_f, scale, g2, Bc, 0.0, Tensor(), dU);  // s·dY·B
                     }
                     if (gA) {
                       dA = Tensor::empty({r, in_f}, adt, dev);
                       lt(true, false, r, in_f, M, 1.0, dU, xa, 0.0, Tensor(), dA);  // dUᵀ·x
                     }
                     if (gB) {
                       Tensor uu = u_keep;
                       if (merged) {
                         uu = Tensor::empty({M, r}, dt, dev);
                         lt(false, true, M, r, in_f, scale, x_keep, Ac, 0.0, Tensor(), uu);
                       }
                       dB = Tensor::empty({out_f, r}, adt, dev);
                       lt(true, false, out_f, r, M, 1.0, g2, uu, 0.0, Tensor(), dB);  // dYᵀ·u
                     }
                     if (gx) {
                       dx = Tensor::empty({M, in_f}, dt, dev);
                       if (merged) {
                         lt(false, false, M, in_f, out_f, 1.0, g2, merged_weight(Wd, Ac, Bc, scale), 0.0, Tensor(), dx);
                       } else {
                         lt(false, false, M, in_f, out_f, 1.0, g2, Wd, 0.0, Tensor(), dx);
                         if (r > 0 && p > 0) {  // the forward's mask, regenerated
                           Tensor t = Tensor::empty({M, in_f}, dt, dev);
                           lt(false, false, M, in_f, r, 1.0, dU, Ac, 0.0, Tensor(), t);
                           cuda_ops::dropout_backward(t.numel(), p, seed, 0, t.raw_data(), t.raw_data(), dt, dev);
                           dx.add_(t);
                         } else if (r > 0) {
                           lt(false, false, M, in_f, r, 1.0, dU, Ac, 1.0, dx, dx);
                         }
                       }
                       dx = dx.view(x_shape);
                     }
                     if (gw) dw = mm_raw(g2.t(), x_keep);
                     if (gb) db = sum(g2, {0});
                     return {dx, dw, db, dA, dB};
                   });
  return out;
}

}  // namespace peft::detail
