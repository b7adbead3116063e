// kernels/cuda/softmax.cu — softmax / log_softmax over the middle dim of (outer, D, inner).
//
// Two layouts, as on the CPU. inner == 1 (the last dim, the common case): one block per row,
// three passes over the row (max, sum of exp, write) with block tree reductions; rows longer
// than the block are strided by the block, so reads are coalesced. inner > 1 (e.g. channels of
// NCHW): one thread per (outer, inner) column walking D, so neighbouring threads read
// neighbouring columns. Sums accumulate in double like the CPU's tiled path, which keeps the
// accumulation order out of the GPU-vs-CPU difference; exp runs in T. The max is subtracted
// before exp. Passes re-read x rather than caching the row in shared memory: simple, any D.
// BF16 (bf16.cuh): x, y, dy, dx, logp and per are BF16 storage; the max, exp and products run in
// float (C = acc_t<T>), the sums in double as for float, and each output is rounded once.
#include "kernels/cuda/softmax.cuh"

#include "core/error.h"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace peft::kernels::cuda {

namespace {

using detail::block_reduce;
using detail::dexp;
using detail::grid_for;
using detail::kThreads;

constexpr int kRowThreadsCap = 512;

// ---------------------------------------------------------------------------- kernels

template <class T>
__global__ void softmax_rows_kernel(int64_t rows, int64_t D, const T* x, T* y, bool log) {
  using C = acc_t<T>;
  __shared__ C smax[32];
  __shared__ double ssum[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform across the block
    const T* xr = x + r * D;
    T* yr = y + r * D;
    C mx = detail::neg_inf<C>();
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) mx = detail::MaxOp{}(mx, to_acc(xr[j]));
    mx = block_reduce(mx, smax, detail::MaxOp{}, detail::neg_inf<C>());
    double s = 0;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) s += static_cast<double>(dexp(to_acc(xr[j]) - mx));
    s = block_reduce(s, ssum, detail::SumOp{}, 0.0);
    if (log) {
      const C lse = mx + static_cast<C>(::log(s));
      for (int64_t j = threadIdx.x; j < D; j += blockDim.x) yr[j] = from_acc<T>(to_acc(xr[j]) - lse);
    } else {
      const C inv = static_cast<C>(1.0 / s);
      for (int64_t j = threadIdx.x; j < D; j += blockDim.x) yr[j] = from_acc<T>(dexp(to_acc(xr[j]) - mx) * inv);
    }
  }
}

template <class T>
__global__ void softmax_cols_kernel(int64_t outer, int64_t D, int64_t inner, const T* x, T* y, bool log) {
  using C = acc_t<T>;
  const int64_t cols = outer * inner, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += step) {
    const int64_t o = c / inner, i = c - o * inner;
    const T* xc = x + o * D * inner + i;
    T* yc = y + o * D * inner + i;
    C mx = detail::neg_inf<C>();
    for (int64_t d = 0; d < D; ++d) mx = detail::MaxOp{}(mx, to_acc(xc[d * inner]));
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += static_cast<double>(dexp(to_acc(xc[d * inner]) - mx));
    if (log) {
      const C shift = mx + static_cast<C>(::log(s));
      for (int64_t d = 0; d < D; ++d) yc[d * inner] = from_acc<T>(to_acc(xc[d * inner]) - shift);
    } else {
      const C inv = static_cast<C>(1.0 / s);
      for (int64_t d = 0; d < D; ++d) yc[d * inner] = from_acc<T>(dexp(to_acc(xc[d * inner]) - mx) * inv);
    }
  }
}

template <class T>
__global__ void softmax_backward_rows_kernel(int64_t rows, int64_t D, const T* y, const T* dy, T* dx, bool log) {
  using C = acc_t<T>;
  __shared__ double ssum[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* yr = y + r * D;
    const T* gr = dy + r * D;
    T* dr = dx + r * D;
    double s = 0;  // softmax: sum(dy * y); log_softmax: sum(dy)
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      const double g = static_cast<double>(to_acc(gr[j]));
      s += log ? g : g * static_cast<double>(to_acc(yr[j]));
    }
    const C st = static_cast<C>(block_reduce(s, ssum, detail::SumOp{}, 0.0));
    if (log) {
      for (int64_t j = threadIdx.x; j < D; j += blockDim.x)
        dr[j] = from_acc<T>(to_acc(gr[j]) - dexp(to_acc(yr[j])) * st);
    } else {
      for (int64_t j = threadIdx.x; j < D; j += blockDim.x) dr[j] = from_acc<T>(to_acc(yr[j]) * (to_acc(gr[j]) - st));
    }
  }
}

template <class T>
__global__ void softmax_backward_cols_kernel(int64_t outer, int64_t D, int64_t inner, const T* y, const T* dy, T* dx,
                                             bool log) {
  using C = acc_t<T>;
  const int64_t cols = outer * inner, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += step) {
    const int64_t o = c / inner, i = c - o * inner, base = o * D * inner + i;
    double s = 0;
    for (int64_t d = 0; d < D; ++d) {
      const int64_t k = base + d * inner;
      const double g = static_cast<double>(to_acc(dy[k]));
      s += log ? g : g * static_cast<double>(to_acc(y[k]));
    }
    const C st = static_cast<C>(s);
    for (int64_t d = 0; d < D; ++d) {
      const int64_t k = base + d * inner;
      const C yk = to_acc(y[k]), gk = to_acc(dy[k]);
      dx[k] = from_acc<T>(log ? gk - dexp(yk) * st : yk * (gk - st));
    }
  }
}

template <class T>
__global__ void nll_forward_kernel(int64_t N, int64_t C, const T* logp, const int64_t* target, int64_t ignore_index,
                                   T* per, int64_t* first_bad) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < N; i += step) {
    const int64_t t = target[i];
    if (t == ignore_index) {
      per[i] = from_acc<T>(0);
    } else if (t < 0 || t >= C) {
      detail::record_bad_index(first_bad, i);
      per[i] = from_acc<T>(0);
    } else {
      per[i] = from_acc<T>(-to_acc(logp[i * C + t]));
    }
  }
}

// Writes every element of dlogp (zeros included), one thread per element: no separate memset.
template <class T>
__global__ void nll_backward_kernel(int64_t N, int64_t C, const int64_t* target, int64_t ignore_index, const T* g,
                                    bool reduced, acc_t<T> factor, T* dlogp, int64_t* first_bad) {
  const int64_t total = N * C, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t i = e / C, c = e - i * C;
    const int64_t t = target[i];
    acc_t<T> v = 0;
    if (t != ignore_index) {
      if (t < 0 || t >= C) {
        if (c == 0) detail::record_bad_index(first_bad, i);
      } else if (c == t) {
        v = -(reduced ? to_acc(g[0]) * factor : to_acc(g[i]));
      }
    }
    dlogp[e] = from_acc<T>(v);
  }
}

void check_sizes(const char* op, int64_t outer, int64_t D, int64_t inner) {
  PEFT_CHECK(outer >= 0 && D >= 0 && inner >= 0, op, ": negative size (outer ", outer, ", D ", D, ", inner ", inner,
             ")");
}

unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(rows < detail::kMaxBlocks ? rows : detail::kMaxBlocks);
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

template <class T>
void softmax_forward(int64_t outer, int64_t D, int64_t inner, const T* x, T* y, bool log, cudaStream_t stream) {
  check_sizes("cuda softmax_forward", outer, D, inner);
  if (outer * D * inner == 0) return;
  PEFT_CHECK(x != nullptr && y != nullptr, "cuda softmax_forward: null device pointer (x or y)");
  if (inner == 1) {
    softmax_rows_kernel<T><<<row_blocks(outer), detail::block_for_row(D, kRowThreadsCap), 0, stream>>>(outer, D, x, y,
                                                                                                       log);
  } else {
    softmax_cols_kernel<T><<<grid_for(outer * inner), kThreads, 0, stream>>>(outer, D, inner, x, y, log);
  }
  PEFT_KERNEL_CHECK();
}

template <class T>
void softmax_backward(int64_t outer, int64_t D, int64_t inner, const T* y, const T* dy, T* dx, bool log,
                      cudaStream_t stream) {
  check_sizes("cuda softmax_backward", outer, D, inner);
  if (outer * D * inner == 0) return;
  PEFT_CHECK(y != nullptr && dy != nullptr && dx != nullptr,
             "cuda softmax_backward: null device pointer (y, dy or dx)");
  if (inner == 1) {
    softmax_backward_rows_kernel<T>
        <<<row_blocks(outer), detail::block_for_row(D, kRowThreadsCap), 0, stream>>>(outer, D, y, dy, dx, log);
  } else {
    softmax_backward_cols_kernel<T><<<grid_for(outer * inner), kThreads, 0, stream>>>(outer, D, inner, y, dy, dx, log);
  }
  PEFT_KERNEL_CHECK();
}

template <class T>
void nll_loss_forward(int64_t N, int64_t C, const T* logp, const int64_t* target, int64_t ignore_index, T* per,
                      int64_t* first_bad, cudaStream_t stream) {
  PEFT_CHECK(N >= 0 && C > 0, "cuda nll_loss_forward: need N >= 0 and C > 0, got N ", N, ", C ", C);
  if (N == 0) return;
  PEFT_CHECK(logp != nullptr && target != nullptr && per != nullptr,
             "cuda nll_loss_forward: null device pointer (logp, target or per)");
  nll_forward_kernel<T><<<grid_for(N), kThreads, 0, stream>>>(N, C, logp, target, ignore_index, per, first_bad);
  PEFT_KERNEL_CHECK();
}

template <class T>
void nll_loss_backward(int64_t N, int64_t C, const int64_t* target, int64_t ignore_index, const T* g, bool reduced,
                       double factor, T* dlogp, int64_t* first_bad, cudaStream_t stream) {
  PEFT_CHECK(N >= 0 && C > 0, "cuda nll_loss_backward: need N >= 0 and C > 0, got N ", N, ", C ", C);
  if (N == 0) return;
  PEFT_CHECK(target != nullptr && g != nullptr && dlogp != nullptr,
             "cuda nll_loss_backward: null device pointer (target, g or dlogp)");
  nll_backward_kernel<T><<<grid_for(N * C), kThreads, 0, stream>>>(N, C, target, ignore_index, g, reduced,
                                                                   static_cast<acc_t<T>>(factor), dlogp,
                                                                   first_bad);
  PEFT_KERNEL_CHECK();
}

#define PEFT_INSTANTIATE(T)                                                                                         \
  template void softmax_forward<T>(int64_t, int64_t, int64_t, const T*, T*, bool, cudaStream_t);                    \
  template void softmax_backward<T>(int64_t, int64_t, int64_t, const T*, const T*, T*, bool, cudaStream_t);         \
  template void nll_loss_forward<T>(int64_t, int64_t, const T*, const int64_t*, int64_t, T*, int64_t*,              \
                                    cudaStream_t);                                                                  \
  template void nll_loss_backward<T>(int64_t, int64_t, const int64_t*, int64_t, const T*, bool, double, T*,         \
                                     int64_t*, cudaStream_t);
PEFT_INSTANTIATE(float)
PEFT_INSTANTIATE(double)
PEFT_INSTANTIATE(Bf16)
#undef PEFT_INSTANTIATE

}  // namespace peft::kernels::cuda
