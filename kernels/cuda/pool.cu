// kernels/cuda/pool.cu — avg_pool2d and adaptive_avg_pool2d, forward and backward.
//
// Forward: one thread per output element, summing its window (the window / divisor arithmetic is
// the CPU kernel's, line for line). Backward is a gather, not a scatter: one thread per input
// element visits only the outputs whose window can contain it, adding dy / divisor in the same
// (oh, ow) ascending order as the CPU's scatter. So there are no atomics, every dx element is
// written exactly once (zeros included), and the result is deterministic.
// BF16 (bf16.cuh): loads widen to float, sums run in float (the adaptive ones in double, as for
// every T), and each output is rounded once.
#include "kernels/cuda/pool.cuh"

#include "core/error.h"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace peft::kernels::cuda {

namespace {

using detail::grid_for;
using detail::kThreads;

struct Window {
  int64_t h0, h1, w0, w1;  // clipped to the input, half-open
  int64_t divisor;
};

// kernels/cpu/pool.cpp's window(): clipped to the padded input for the count_include_pad divisor,
// then to the input for the sum.
__device__ __forceinline__ Window window(const Pool2dShape& s, int64_t oh, int64_t ow) {
  int64_t h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
  int64_t h1 = min(h0 + s.kh, s.H + s.ph), w1 = min(w0 + s.kw, s.W + s.pw);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = max(h0, int64_t(0));
  w0 = max(w0, int64_t(0));
  h1 = min(h1, s.H);
  w1 = min(w1, s.W);
  const int64_t inside = (h1 > h0 && w1 > w0) ? (h1 - h0) * (w1 - w0) : 0;
  return {h0, h1, w0, w1, s.count_include_pad ? padded : inside};
}

// Output indices o in [lo, hi] whose unclipped window [o*st - pad, o*st - pad + k) holds i.
__device__ __forceinline__ void covering(int64_t i, int64_t k, int64_t st, int64_t pad, int64_t out, int64_t& lo,
                                         int64_t& hi) {
  const int64_t num = i + pad - k + 1;  // o*st >= num
  lo = num <= 0 ? 0 : (num + st - 1) / st;
  hi = min((i + pad) / st, out - 1);
}

// PyTorch's adaptive window: [floor(o * I / O), ceil((o + 1) * I / O)).
__device__ __forceinline__ int64_t ada_start(int64_t o, int64_t I, int64_t O) { return (o * I) / O; }
__device__ __forceinline__ int64_t ada_end(int64_t o, int64_t I, int64_t O) { return ((o + 1) * I + O - 1) / O; }

// ---------------------------------------------------------------------------- kernels

template <class T>
__global__ void avg_pool2d_forward_kernel(Pool2dShape s, const T* x, T* y) {
  const int64_t total = s.N * s.C * s.Ho * s.Wo, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t ow = e % s.Wo, oh = (e / s.Wo) % s.Ho, pl = e / (s.Wo * s.Ho);
    const Window win = window(s, oh, ow);
    if (win.h0 >= win.h1 || win.w0 >= win.w1) {
      y[e] = from_acc<T>(0);
      continue;
    }
    const T* xp = x + pl * s.H * s.W;
    acc_t<T> sum = 0;
    for (int64_t ih = win.h0; ih < win.h1; ++ih)
      for (int64_t iw = win.w0; iw < win.w1; ++iw) sum += to_acc(xp[ih * s.W + iw]);
    y[e] = from_acc<T>(sum / static_cast<acc_t<T>>(win.divisor));
  }
}

template <class T>
__global__ void avg_pool2d_backward_kernel(Pool2dShape s, const T* dy, T* dx) {
  const int64_t total = s.N * s.C * s.H * s.W, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t iw = e % s.W, ih = (e / s.W) % s.H, pl = e / (s.W * s.H);
    const T* dyp = dy + pl * s.Ho * s.Wo;
    int64_t oh0, oh1, ow0, ow1;
    covering(ih, s.kh, s.sh, s.ph, s.Ho, oh0, oh1);
    covering(iw, s.kw, s.sw, s.pw, s.Wo, ow0, ow1);
    acc_t<T> acc = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const Window win = window(s, oh, ow);  // the exact test: clipping can exclude ih / iw
        if (ih < win.h0 || ih >= win.h1 || iw < win.w0 || iw >= win.w1) continue;
        acc += to_acc(dyp[oh * s.Wo + ow]) / static_cast<acc_t<T>>(win.divisor);
      }
    }
    dx[e] = from_acc<T>(acc);
  }
}

template <class T>
__global__ void adaptive_forward_kernel(int64_t planes, int64_t H, int64_t W, int64_t Ho, int64_t Wo, const T* x,
                                        T* y) {
  const int64_t total = planes * Ho * Wo, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t ow = e % Wo, oh = (e / Wo) % Ho, pl = e / (Wo * Ho);
    const int64_t h0 = ada_start(oh, H, Ho), h1 = ada_end(oh, H, Ho);
    const int64_t w0 = ada_start(ow, W, Wo), w1 = ada_end(ow, W, Wo);
    const T* xp = x + pl * H * W;
    double sum = 0;  // whole-plane windows (the (1, 1) case) can be large
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) sum += static_cast<double>(to_acc(xp[ih * W + iw]));
    y[e] = from_acc<T>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
  }
}

template <class T>
__global__ void adaptive_backward_kernel(int64_t planes, int64_t H, int64_t W, int64_t Ho, int64_t Wo, const T* dy,
                                         T* dx) {
  const int64_t total = planes * H * W, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t iw = e % W, ih = (e / W) % H, pl = e / (W * H);
    const T* dyp = dy + pl * Ho * Wo;
    // Outputs whose window holds i: o in [floor(i * O / I), ceil((i + 1) * O / I) - 1].
    const int64_t oh0 = (ih * Ho) / H, oh1 = min(((ih + 1) * Ho + H - 1) / H - 1, Ho - 1);
    const int64_t ow0 = (iw * Wo) / W, ow1 = min(((iw + 1) * Wo + W - 1) / W - 1, Wo - 1);
    acc_t<T> acc = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      const int64_t h0 = ada_start(oh, H, Ho), h1 = ada_end(oh, H, Ho);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t w0 = ada_start(ow, W, Wo), w1 = ada_end(ow, W, Wo);
        if (iw < w0 || iw >= w1) continue;
        acc += to_acc(dyp[oh * Wo + ow]) / static_cast<acc_t<T>>((h1 - h0) * (w1 - w0));
      }
    }
    dx[e] = from_acc<T>(acc);
  }
}

void check_pool_shape(const char* op, const Pool2dShape& s) {
  PEFT_CHECK(s.N >= 0 && s.C >= 0 && s.H >= 0 && s.W >= 0, op, ": negative input size (", s.N, ", ", s.C, ", ", s.H,
             ", ", s.W, ")");
  PEFT_CHECK(s.kh > 0 && s.kw > 0 && s.sh > 0 && s.sw > 0 && s.ph >= 0 && s.pw >= 0 && 2 * s.ph <= s.kh &&
                 2 * s.pw <= s.kw,
             op, ": need kernel, stride > 0 and 0 <= pad <= kernel / 2, got kernel (", s.kh, ", ", s.kw, "), stride (",
             s.sh, ", ", s.sw, "), pad (", s.ph, ", ", s.pw, ")");
  const Pool2dShape ref = cpu::pool2d_shape(s.N, s.C, s.H, s.W, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.ceil_mode,
                                            s.count_include_pad);
  PEFT_CHECK(s.Ho == ref.Ho && s.Wo == ref.Wo && s.Ho > 0 && s.Wo > 0, op, ": output size (", s.Ho, ", ", s.Wo,
             ") is not pool2d_shape's (", ref.Ho, ", ", ref.Wo, ") or is empty");
}

void check_adaptive(const char* op, int64_t N, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
  PEFT_CHECK(N >= 0 && C >= 0 && H > 0 && W > 0 && Ho > 0 && Wo > 0, op, ": need N, C >= 0 and H, W, Ho, Wo > 0, got (",
             N, ", ", C, ", ", H, ", ", W, ") -> (", Ho, ", ", Wo, ")");
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

template <class T>
void avg_pool2d_forward(const Pool2dShape& s, const T* x, T* y, cudaStream_t stream) {
  check_pool_shape("cuda avg_pool2d_forward", s);
  const int64_t total = s.N * s.C * s.Ho * s.Wo;
  if (total == 0) return;
  PEFT_CHECK(x != nullptr && y != nullptr, "cuda avg_pool2d_forward: null device pointer (x or y)");
  avg_pool2d_forward_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(s, x, y);
  PEFT_KERNEL_CHECK();
}

template <class T>
void avg_pool2d_backward(const Pool2dShape& s, const T* dy, T* dx, cudaStream_t stream) {
  check_pool_shape("cuda avg_pool2d_backward", s);
  const int64_t total = s.N * s.C * s.H * s.W;
  if (total == 0) return;
  PEFT_CHECK(dy != nullptr && dx != nullptr, "cuda avg_pool2d_backward: null device pointer (dy or dx)");
  avg_pool2d_backward_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(s, dy, dx);
  PEFT_KERNEL_CHECK();
}

template <class T>
void adaptive_avg_pool2d_forward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, const T* x, T* y,
                                 cudaStream_t stream) {
  check_adaptive("cuda adaptive_avg_pool2d_forward", N, C, H, W, Ho, Wo);
  const int64_t total = N * C * Ho * Wo;
  if (total == 0) return;
  PEFT_CHECK(x != nullptr && y != nullptr, "cuda adaptive_avg_pool2d_forward: null device pointer (x or y)");
  adaptive_forward_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(N * C, H, W, Ho, Wo, x, y);
  PEFT_KERNEL_CHECK();
}

template <class T>
void adaptive_avg_pool2d_backward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo, const T* dy,
                                  T* dx, cudaStream_t stream) {
  check_adaptive("cuda adaptive_avg_pool2d_backward", N, C, H, W, Ho, Wo);
  const int64_t total = N * C * H * W;
  if (total == 0) return;
  PEFT_CHECK(dy != nullptr && dx != nullptr, "cuda adaptive_avg_pool2d_backward: null device pointer (dy or dx)");
  adaptive_backward_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(N * C, H, W, Ho, Wo, dy, dx);
  PEFT_KERNEL_CHECK();
}

#define PEFT_INSTANTIATE(T)                                                                                        \
  template void avg_pool2d_forward<T>(const Pool2dShape&, const T*, T*, cudaStream_t);                             \
  template void avg_pool2d_backward<T>(const Pool2dShape&, const T*, T*, cudaStream_t);                            \
  template void adaptive_avg_pool2d_forward<T>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const T*, T*, \
                                               cudaStream_t);                                                      \
  template void adaptive_avg_pool2d_backward<T>(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const T*, T*, \
                                                cudaStream_t);
PEFT_INSTANTIATE(float)
PEFT_INSTANTIATE(double)
PEFT_INSTANTIATE(Bf16)
#undef PEFT_INSTANTIATE

}  // namespace peft::kernels::cuda
