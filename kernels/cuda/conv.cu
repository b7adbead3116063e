// kernels/cuda/conv.cu — the direct conv2d kernels and the bias kernels (see conv.cuh).
//
// Forward: one thread per output element (n, o, oh, ow) sums its group's Cg·kh·kw window
// products. Input gradient: one thread per input element (n, c, ih, iw) gathers from the
// outputs whose window covers it (oh·sh − ph + i·dh == ih for some tap i), so every dx element
// is written exactly once, zeros included. Weight and bias gradients: one block per weight
// element / channel reduces its N·Ho·Wo products with the fixed block tree of device_utils.cuh.
// No atomics anywhere, so each result depends only on the data and the launch shape.
// Accumulation is in acc_t<T> (bf16.cuh): T for float / double, as the CPU's im2col GEMMs, and
// float for BF16 storage, rounded once per output; everything indexes in int64_t.
#include "kernels/cuda/conv.cuh"

#include "core/error.h"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace peft::kernels::cuda {

namespace {

using detail::block_for_row;
using detail::block_reduce;
using detail::grid_for;
using detail::kMaxBlocks;
using detail::kThreads;
using detail::SumOp;

// ---------------------------------------------------------------------------- kernels

template <class T>
__global__ void forward_kernel(Conv2dShape s, const T* x, const T* w, const T* b, T* y) {
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups, HW = s.H * s.W;
  const int64_t total = s.N * s.O * s.Ho * s.Wo, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t ow = e % s.Wo, oh = (e / s.Wo) % s.Ho, o = (e / (s.Wo * s.Ho)) % s.O, n = e / (s.Wo * s.Ho * s.O);
    const T* xg = x + (n * s.C + (o / Og) * Cg) * HW;
    const T* wo = w + o * Cg * s.kh * s.kw;
    acc_t<T> acc = 0;
    for (int64_t c = 0; c < Cg; ++c) {
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t ih = oh * s.sh - s.ph + i * s.dh;
        if (ih < 0 || ih >= s.H) continue;
        const T* xr = xg + c * HW + ih * s.W;
        const T* wr = wo + (c * s.kh + i) * s.kw;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t iw = ow * s.sw - s.pw + j * s.dw;
          if (iw >= 0 && iw < s.W) acc += to_acc(xr[iw]) * to_acc(wr[j]);
        }
      }
    }
    y[e] = from_acc<T>(b != nullptr ? acc + to_acc(b[o]) : acc);
  }
}

// The output index o with o·st − pad + tap·dil == i, or -1 when the tap does not reach i.
__device__ __forceinline__ int64_t source_of(int64_t i, int64_t tap, int64_t st, int64_t pad, int64_t dil,
                                             int64_t out) {
  const int64_t t = i + pad - tap * dil;
  if (t < 0 || t % st != 0) return -1;
  const int64_t o = t / st;
  return o < out ? o : -1;
}

template <class T>
__global__ void backward_input_kernel(Conv2dShape s, const T* w, const T* dy, T* dx) {
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups, P = s.Ho * s.Wo;
  const int64_t total = s.N * s.C * s.H * s.W, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t iw = e % s.W, ih = (e / s.W) % s.H, c = (e / (s.W * s.H)) % s.C, n = e / (s.W * s.H * s.C);
    const int64_t g = c / Cg, cl = c % Cg;
    acc_t<T> acc = 0;
    for (int64_t ol = 0; ol < Og; ++ol) {
      const int64_t o = g * Og + ol;
      const T* dyo = dy + (n * s.O + o) * P;
      const T* wk = w + (o * Cg + cl) * s.kh * s.kw;
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t oh = source_of(ih, i, s.sh, s.ph, s.dh, s.Ho);
        if (oh < 0) continue;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t ow = source_of(iw, j, s.sw, s.pw, s.dw, s.Wo);
          if (ow >= 0) acc += to_acc(dyo[oh * s.Wo + ow]) * to_acc(wk[i * s.kw + j]);
        }
      }
    }
    dx[e] = from_acc<T>(acc);
  }
}

// One block per weight element (grid-stride over them); the block's threads split the N·Ho·Wo
// products, then reduce. Every thread of a block runs the same number of outer iterations, so
// the barriers inside block_reduce are reached uniformly.
template <class T>
__global__ void backward_weight_kernel(Conv2dShape s, const T* x, const T* dy, T* dw) {
  using C = acc_t<T>;
  __shared__ C smem[32];
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups, P = s.Ho * s.Wo, HW = s.H * s.W;
  const int64_t nw = s.O * Cg * s.kh * s.kw, terms = s.N * P;
  for (int64_t k = blockIdx.x; k < nw; k += gridDim.x) {
    const int64_t j = k % s.kw, i = (k / s.kw) % s.kh, cl = (k / (s.kw * s.kh)) % Cg, o = k / (s.kw * s.kh * Cg);
    const int64_t c = (o / Og) * Cg + cl;
    C acc = 0;
    for (int64_t r = threadIdx.x; r < terms; r += blockDim.x) {
      const int64_t n = r / P, p = r % P, oh = p / s.Wo, ow = p % s.Wo;
      const int64_t ih = oh * s.sh - s.ph + i * s.dh, iw = ow * s.sw - s.pw + j * s.dw;
      if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
      acc += to_acc(dy[(n * s.O + o) * P + p]) * to_acc(x[(n * s.C + c) * HW + ih * s.W + iw]);
    }
    acc = block_reduce(acc, smem, SumOp{}, C(0));
    if (threadIdx.x == 0) dw[k] = from_acc<T>(acc);
  }
}

template <class T>
__global__ void add_bias_kernel(Conv2dShape s, const T* b, T* y) {
  const int64_t P = s.Ho * s.Wo, total = s.N * s.O * P, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step)
    y[e] = from_acc<T>(to_acc(y[e]) + to_acc(b[(e / P) % s.O]));
}

// One block per output channel, as backward_weight_kernel.
template <class T>
__global__ void backward_bias_kernel(Conv2dShape s, const T* dy, T* db) {
  using C = acc_t<T>;
  __shared__ C smem[32];
  const int64_t P = s.Ho * s.Wo, terms = s.N * P;
  for (int64_t o = blockIdx.x; o < s.O; o += gridDim.x) {
    C acc = 0;
    for (int64_t r = threadIdx.x; r < terms; r += blockDim.x) acc += to_acc(dy[((r / P) * s.O + o) * P + r % P]);
    acc = block_reduce(acc, smem, SumOp{}, C(0));
    if (threadIdx.x == 0) db[o] = from_acc<T>(acc);
  }
}

unsigned blocks_for(int64_t items) {
  return static_cast<unsigned>(items < 1 ? 1 : (items > kMaxBlocks ? kMaxBlocks : items));
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

void check_conv2d_shape(const char* op, const Conv2dShape& s) {
  PEFT_CHECK(s.N >= 0 && s.C >= 0 && s.H >= 0 && s.W >= 0 && s.O >= 0 && s.kh > 0 && s.kw > 0, op,
             ": need N, C, H, W, O >= 0 and kh, kw > 0, got input (", s.N, ", ", s.C, ", ", s.H, ", ", s.W,
             "), weight (", s.O, ", ", s.kh, ", ", s.kw, ")");
  PEFT_CHECK(s.sh > 0 && s.sw > 0 && s.dh > 0 && s.dw > 0 && s.ph >= 0 && s.pw >= 0, op,
             ": need stride, dilation > 0 and padding >= 0, got stride (", s.sh, ", ", s.sw, "), dilation (", s.dh,
             ", ", s.dw, "), padding (", s.ph, ", ", s.pw, ")");
  PEFT_CHECK(s.groups > 0 && s.C % s.groups == 0 && s.O % s.groups == 0, op, ": groups ", s.groups,
             " must divide in_channels ", s.C, " and out_channels ", s.O);
  const Conv2dShape ref = cpu::conv2d_shape(s.N, s.C, s.H, s.W, s.O, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw,
                                            s.groups);
  PEFT_CHECK(s.Ho == ref.Ho && s.Wo == ref.Wo && s.Ho > 0 && s.Wo > 0, op, ": output size (", s.Ho, ", ", s.Wo,
             ") is not conv2d_shape's (", ref.Ho, ", ", ref.Wo, ") or is empty");
}

template <class T>
void conv2d_forward_direct(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, cudaStream_t stream) {
  check_conv2d_shape("cuda conv2d_forward", s);
  const int64_t total = s.N * s.O * s.Ho * s.Wo;
  if (total == 0) return;
  PEFT_CHECK(y != nullptr && (s.C == 0 || (x != nullptr && w != nullptr)),
             "cuda conv2d_forward: null device pointer (x, w or y)");
  forward_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(s, x, w, b, y);
  PEFT_KERNEL_CHECK();
}

template <class T>
void conv2d_backward_input_direct(const Conv2dShape& s, const T* w, const T* dy, T* dx, cudaStream_t stream) {
  check_conv2d_shape("cuda conv2d_backward_input", s);
  const int64_t total = s.N * s.C * s.H * s.W;
  if (total == 0) return;
  PEFT_CHECK(dx != nullptr && (s.O == 0 || (w != nullptr && dy != nullptr)),
             "cuda conv2d_backward_input: null device pointer (w, dy or dx)");
  backward_input_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(s, w, dy, dx);
  PEFT_KERNEL_CHECK();
}

template <class T>
void conv2d_backward_weight_direct(const Conv2dShape& s, const T* x, const T* dy, T* dw, cudaStream_t stream) {
  check_conv2d_shape("cuda conv2d_backward_weight", s);
  const int64_t nw = s.O * (s.C / s.groups) * s.kh * s.kw;
  if (nw == 0) return;
  PEFT_CHECK(dw != nullptr && (s.N == 0 || (x != nullptr && dy != nullptr)),
             "cuda conv2d_backward_weight: null device pointer (x, dy or dw)");
  backward_weight_kernel<T><<<blocks_for(nw), block_for_row(s.N * s.Ho * s.Wo), 0, stream>>>(s, x, dy, dw);
  PEFT_KERNEL_CHECK();
}

template <class T>
void conv2d_add_bias(const Conv2dShape& s, const T* b, T* y, cudaStream_t stream) {
  check_conv2d_shape("cuda conv2d_add_bias", s);
  const int64_t total = s.N * s.O * s.Ho * s.Wo;
  if (total == 0) return;
  PEFT_CHECK(b != nullptr && y != nullptr, "cuda conv2d_add_bias: null device pointer (b or y)");
  add_bias_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(s, b, y);
  PEFT_KERNEL_CHECK();
}

template <class T>
void conv2d_backward_bias(const Conv2dShape& s, const T* dy, T* db, cudaStream_t stream) {
  check_conv2d_shape("cuda conv2d_backward_bias", s);
  if (s.O == 0) return;
  PEFT_CHECK(db != nullptr && (s.N == 0 || dy != nullptr), "cuda conv2d_backward_bias: null device pointer (dy or db)");
  backward_bias_kernel<T><<<blocks_for(s.O), block_for_row(s.N * s.Ho * s.Wo), 0, stream>>>(s, dy, db);
  PEFT_KERNEL_CHECK();
}

#define PEFT_INSTANTIATE(T)                                                                                   \
  template void conv2d_forward_direct<T>(const Conv2dShape&, const T*, const T*, const T*, T*, cudaStream_t); \
  template void conv2d_backward_input_direct<T>(const Conv2dShape&, const T*, const T*, T*, cudaStream_t);    \
  template void conv2d_backward_weight_direct<T>(const Conv2dShape&, const T*, const T*, T*, cudaStream_t);   \
  template void conv2d_add_bias<T>(const Conv2dShape&, const T*, T*, cudaStream_t);                           \
  template void conv2d_backward_bias<T>(const Conv2dShape&, const T*, T*, cudaStream_t);
PEFT_INSTANTIATE(float)
PEFT_INSTANTIATE(double)
PEFT_INSTANTIATE(Bf16)
#undef PEFT_INSTANTIATE

}  // namespace peft::kernels::cuda
