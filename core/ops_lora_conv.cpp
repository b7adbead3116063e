// lora_conv1x1: a LoRA 1×1 convolution (stride 1, no padding, groups 1) computed on NCHW directly.
// A 1×1 convolution of image n is the matrix product W·X_n with X_n = x[n] viewed as (in, H·W),
// so every product here is a per-image GEMM on the tensor's own memory. The alternative — permute
// to rows of channels, lora_linear, permute back — copies the input, the output and both of
// their gradients once more per layer (about 10 % of a PoolFormer-M36 training step on the CPU).
//   forward:  U_n = A·X_n (r, HW), Y_n = b + W·X_n + s·B·U_n
//   backward: dU_n = s·Bᵀ·dY_n, dB = s·Σ dY_n·U_nᵀ, dA = Σ dU_n·X_nᵀ, dX_n = Wᵀ·dY_n + Aᵀ·dU_n,
//             dW = Σ dY_n·X_nᵀ only when W requires grad, db = Σ_n,hw dY_n.
// No dropout: the LoRA layer keeps its permute + lora_linear path when dropout is active, so the
// Generator's mask keeps lora_linear's (row, channel) order.
#include <algorithm>
#include <optional>

#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "kernels/cpu/gemm.h"

namespace peft {

namespace kc = kernels::cpu;

namespace {

struct Conv1x1Dims {
  int64_t N, in, out, r, HW;
};

template <class T>
void forward_kernel(const Conv1x1Dims& d, const T* x, const T* w, const T* b, const T* A, const T* B, T scale, T* u,
                    T* y) {
  const int64_t ldx = std::max<int64_t>(d.HW, 1);
  for (int64_t n = 0; n < d.N; ++n) {
    const T* xn = x + n * d.in * d.HW;
    T* un = u + n * d.r * d.HW;
    T* yn = y + n * d.out * d.HW;
    for (int64_t o = 0; o < d.out; ++o) std::fill(yn + o * d.HW, yn + (o + 1) * d.HW, b ? b[o] : T(0));
    if (d.in > 0) {
      kc::gemm<T>(false, false, d.out, d.HW, d.in, T(1), w, d.in, xn, ldx, T(1), yn, ldx);
      if (d.r > 0) kc::gemm<T>(false, false, d.r, d.HW, d.in, T(1), A, d.in, xn, ldx, T(0), un, ldx);
    } else if (d.r > 0) {
      std::fill(un, un + d.r * d.HW, T(0));
    }
    if (d.r > 0) kc::gemm<T>(false, false, d.out, d.HW, d.r, scale, B, d.r, un, ldx, T(1), yn, ldx);
  }
}

struct Conv1x1Grads {
  bool x, w, b, A, B;
};

// Each gradient pointer is null when not wanted; dW, dA, dB, db accumulate over the images.
template <class T>
void backward_kernel(const Conv1x1Dims& d, const Conv1x1Grads& want, const T* dy, const T* x, const T* w, const T* A,
                     const T* B, const T* u, T scale, T* du, T* dx, T* dw, T* db, T* dA, T* dB) {
  const int64_t ldx = std::max<int64_t>(d.HW, 1);
  for (int64_t n = 0; n < d.N; ++n) {
    const T* dyn = dy + n * d.out * d.HW;
    const T* xn = x ? x + n * d.in * d.HW : nullptr;
    const T acc = n == 0 ? T(0) : T(1);  // the first image writes the sums, later ones add
    if (d.r > 0 && (want.A || want.x))
      kc::gemm<T>(true, false, d.r, d.HW, d.out, scale, B, d.r, dyn, ldx, T(0), du, ldx);
    if (want.B && d.r > 0) kc::gemm<T>(false, true, d.out, d.r, d.HW, scale, dyn, ldx, u + n * d.r * d.HW, ldx, acc, dB,
                                       d.r);
    if (want.A && d.r > 0 && d.in > 0) kc::gemm<T>(false, true, d.r, d.in, d.HW, T(1), du, ldx, xn, ldx, acc, dA, d.in);
    if (want.x && d.in > 0) {
      T* dxn = dx + n * d.in * d.HW;
      kc::gemm<T>(true, false, d.in, d.HW, d.out, T(1), w, d.in, dyn, ldx, T(0), dxn, ldx);
      if (d.r > 0) kc::gemm<T>(true, false, d.in, d.HW, d.r, T(1), A, d.in, du, ldx, T(1), dxn, ldx);
    }
    if (want.w && d.in > 0) kc::gemm<T>(false, true, d.out, d.in, d.HW, T(1), dyn, ldx, xn, ldx, acc, dw, d.in);
    if (want.b) {
      for (int64_t o = 0; o < d.out; ++o) {
        T s = 0;
        for (int64_t i = 0; i < d.HW; ++i) s += dyn[o * d.HW + i];
        db[o] = acc * db[o] + s;
      }
    }
  }
}

// Gradients of an empty product (HW == 0 or N == 0): zeros of the parameter's shape.
Tensor zeros_like_if(bool want, const Tensor& t) { return want ? Tensor::zeros(t.shape(), t.dtype(), Device::cpu()) : Tensor(); }

}  // namespace

Tensor lora_conv1x1(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B, double scale) {
  PEFT_PROFILE_OP("lora_conv1x1", x);
  detail::check_float_inputs_any_device("lora_conv1x1", {&x, &w, &b, &A, &B});
  PEFT_CHECK(w.dim() == 2, "lora_conv1x1: weight must be 2-D (out, in), got ", shape_str(w.shape()));
  const int64_t out_c = w.shape()[0], in_c = w.shape()[1];
  PEFT_CHECK(x.dim() == 4 && x.shape()[1] == in_c, "lora_conv1x1: expected input (N, ", in_c, ", H, W), got ",
             shape_str(x.shape()));
  PEFT_CHECK(A.dim() == 2 && A.shape()[1] == in_c, "lora_conv1x1: lora_A must be (r, ", in_c, "), got ",
             shape_str(A.shape()));
  const int64_t r = A.shape()[0];
  PEFT_CHECK(B.dim() == 2 && B.shape()[0] == out_c && B.shape()[1] == r, "lora_conv1x1: lora_B must be (", out_c, ", ",
             r, "), got ", shape_str(B.shape()));
  PEFT_CHECK(!b.defined() || (b.dim() == 1 && b.shape()[0] == out_c), "lora_conv1x1: bias shape ",
             shape_str(b.shape()), " does not match ", out_c, " output channels");

  if (x.device().is_cuda()) {
    // On CUDA: a 1×1 convolution is lora_linear on the NHWC rows (cuBLAS), back to contiguous NCHW.
    return lora_linear(x.permute({0, 2, 3, 1}), w, b, A, B, scale).permute({0, 3, 1, 2}).contiguous();
  }
  const Conv1x1Dims d{x.shape()[0], in_c, out_c, r, x.shape()[2] * x.shape()[3]};
  std::optional<NoGradGuard> no_grad(std::in_place);  // released before recording
  Tensor xc = detail::contiguous_data(x), wc = detail::contiguous_data(w), Ac = detail::contiguous_data(A),
         Bc = detail::contiguous_data(B), bc = b.defined() ? detail::contiguous_data(b) : Tensor();
  Tensor y = Tensor::empty({d.N, out_c, x.shape()[2], x.shape()[3]}, x.dtype(), Device::cpu());
  Tensor u = Tensor::empty({d.N, r, d.HW}, x.dtype(), Device::cpu());
  PEFT_DISPATCH_FLOAT(x.dtype(), "lora_conv1x1", [&] {
    forward_kernel<scalar_t>(d, xc.data_ptr<scalar_t>(), wc.data_ptr<scalar_t>(),
                             bc.defined() ? bc.data_ptr<scalar_t>() : nullptr, Ac.data_ptr<scalar_t>(),
                             Bc.data_ptr<scalar_t>(), static_cast<scalar_t>(scale), u.data_ptr<scalar_t>(),
                             y.data_ptr<scalar_t>());
  });

  const Conv1x1Grads want{x.requires_grad(), w.requires_grad(), b.defined() && b.requires_grad(), A.requires_grad(),
                          B.requires_grad()};
  // Only what the wanted gradients read is kept: x for dA / dW, U for dB, W for dX, A and B for dU.
  Tensor x_saved = (want.A || want.w) ? xc : Tensor(), u_saved = want.B ? u : Tensor();
  const Shape x_shape = x.shape();
  no_grad.reset();
  autograd::record("LoraConv1x1Backward", {x, w, b, A, B}, {y},
                   [=](const std::vector<Tensor>& grads) -> std::vector<Tensor> {
                     Tensor dy = detail::contiguous_data(grads[0]);
                     Tensor dx = want.x ? Tensor::empty(x_shape, dy.dtype(), Device::cpu()) : Tensor();
                     if (d.N == 0 || d.HW == 0) {
                       if (dx.defined()) dx.zero_();
                       return {dx, zeros_like_if(want.w, wc), zeros_like_if(want.b, bc), zeros_like_if(want.A, Ac),
                               zeros_like_if(want.B, Bc)};
                     }
                     Tensor dw = want.w ? Tensor::empty(wc.shape(), dy.dtype(), Device::cpu()) : Tensor();
                     Tensor db = want.b ? Tensor::empty(bc.shape(), dy.dtype(), Device::cpu()) : Tensor();
                     Tensor dA = want.A ? Tensor::empty(Ac.shape(), dy.dtype(), Device::cpu()) : Tensor();
                     Tensor dB = want.B ? Tensor::empty(Bc.shape(), dy.dtype(), Device::cpu()) : Tensor();
                     Tensor du = Tensor::empty({r, d.HW}, dy.dtype(), Device::cpu());
                     PEFT_DISPATCH_FLOAT(dy.dtype(), "lora_conv1x1 backward", [&] {
                       using T = scalar_t;
                       auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
                       backward_kernel<T>(d, want, dy.data_ptr<T>(), ptr(x_saved), wc.data_ptr<T>(), Ac.data_ptr<T>(),
                                          Bc.data_ptr<T>(), ptr(u_saved), static_cast<T>(scale), du.data_ptr<T>(),
                                          ptr(dx), ptr(dw), ptr(db), ptr(dA), ptr(dB));
                     });
                     return {dx, dw, db, dA, dB};
                   });
  return y;
}

}  // namespace peft
