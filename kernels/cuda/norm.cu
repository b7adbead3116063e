// kernels/cuda/norm.cu — layer_norm / group_norm on contiguous rows.
//
// Same numerics as kernels/cpu/norm.cpp: statistics two-pass (mean, then the centred sum of
// squares) in double whatever T is, so float inputs with a large mean keep their variance; the
// backward closed form per normalised set of n elements, with g = dy * gamma:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),   xhat = (x - mean) * rstd.
// Layout: one block per normalised set (a layer_norm row, a group_norm (n, g) slice), which is
// contiguous, so block-strided passes read coalesced; each pass re-reads x (no shared-memory row
// cache: simple, any size). dw / db: layer_norm has one thread per column walking the R rows
// (neighbouring threads, neighbouring columns); group_norm has one block per channel reducing
// its N * S elements. Every sum is a fixed tree: deterministic, no atomics.
// BF16 data (bf16.cuh) is widened on load and each output rounded once; since all the math is
// in double already, BF16 only changes the loads, the stores and the statistics (acc_t<T>: F32).
#include "kernels/cuda/norm.cuh"

#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace peft::kernels::cuda {

namespace {

using detail::block_reduce;
using detail::grid_for;
using detail::kThreads;
using detail::SumOp;

// Block-wide mean and rstd of n contiguous values (every thread gets them).
template <class T>
__device__ void block_moments(const T* x, int64_t n, double eps, double* smem, double& mean, double& rstd) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += static_cast<double>(to_acc(x[i]));
  s = block_reduce(s, smem, SumOp{}, 0.0);
  mean = n > 0 ? s / static_cast<double>(n) : 0.0;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double d = static_cast<double>(to_acc(x[i])) - mean;
    ss += d * d;
  }
  ss = block_reduce(ss, smem, SumOp{}, 0.0);
  const double var = n > 0 ? ss / static_cast<double>(n) : 0.0;
  rstd = 1.0 / sqrt(var + eps);
}

// ---------------------------------------------------------------------------- layer_norm kernels

template <class T>
__global__ void layer_norm_forward_kernel(int64_t R, int64_t M, double eps, const T* x, const T* w, const T* b, T* y,
                                          acc_t<T>* mean, acc_t<T>* rstd) {
  __shared__ double smem[32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {  // uniform across the block
    const T* xr = x + r * M;
    T* yr = y + r * M;
    double m, rs;
    block_moments(xr, M, eps, smem, m, rs);
    if (threadIdx.x == 0) {
      mean[r] = static_cast<acc_t<T>>(m);
      rstd[r] = static_cast<acc_t<T>>(rs);
    }
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
      double v = (static_cast<double>(to_acc(xr[i])) - m) * rs;
      if (w != nullptr) v *= static_cast<double>(to_acc(w[i]));
      if (b != nullptr) v += static_cast<double>(to_acc(b[i]));
      yr[i] = from_acc<T>(v);
    }
  }
}

template <class T>
__global__ void layer_norm_backward_dx_kernel(int64_t R, int64_t M, const T* x, const T* w, const acc_t<T>* mean,
                                              const acc_t<T>* rstd, const T* dy, T* dx) {
  __shared__ double smem[32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const T* xr = x + r * M;
    const T* dyr = dy + r * M;
    T* dxr = dx + r * M;
    const double m = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
    double sg = 0, sgx = 0;
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
      double g = static_cast<double>(to_acc(dyr[i]));
      if (w != nullptr) g *= static_cast<double>(to_acc(w[i]));
      sg += g;
      sgx += g * (static_cast<double>(to_acc(xr[i])) - m) * rs;
    }
    sg = block_reduce(sg, smem, SumOp{}, 0.0);
    sgx = block_reduce(sgx, smem, SumOp{}, 0.0);
    const double inv_m = M > 0 ? 1.0 / static_cast<double>(M) : 0.0;
    const double mg = sg * inv_m, mgx = sgx * inv_m;
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
      double g = static_cast<double>(to_acc(dyr[i]));
      if (w != nullptr) g *= static_cast<double>(to_acc(w[i]));
      const double xhat = (static_cast<double>(to_acc(xr[i])) - m) * rs;
      dxr[i] = from_acc<T>(rs * (g - mg - xhat * mgx));
    }
  }
}

template <class T>
__global__ void layer_norm_backward_dwdb_kernel(int64_t R, int64_t M, const T* x, const acc_t<T>* mean,
                                                const acc_t<T>* rstd, const T* dy, T* dw, T* db) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < M; i += step) {
    double sw = 0, sb = 0;
    for (int64_t r = 0; r < R; ++r) {
      const double d = static_cast<double>(to_acc(dy[r * M + i]));
      sb += d;
      sw += d * (static_cast<double>(to_acc(x[r * M + i])) - static_cast<double>(mean[r])) *
            static_cast<double>(rstd[r]);
    }
    if (dw != nullptr) dw[i] = from_acc<T>(sw);
    if (db != nullptr) db[i] = from_acc<T>(sb);
  }
}

// ---------------------------------------------------------------------------- group_norm kernels

template <class T>
__global__ void group_norm_forward_kernel(int64_t N, int64_t C, int64_t S, int64_t G, double eps, const T* x,
                                          const T* w, const T* b, T* y, acc_t<T>* mean, acc_t<T>* rstd) {
  __shared__ double smem[32];
  const int64_t Cg = C / G, n = Cg * S;
  for (int64_t ng = blockIdx.x; ng < N * G; ng += gridDim.x) {
    const int64_t g = ng % G;
    const T* xs = x + ng * n;
    T* ys = y + ng * n;
    double m, r;
    block_moments(xs, n, eps, smem, m, r);
    if (threadIdx.x == 0) {
      mean[ng] = static_cast<acc_t<T>>(m);
      rstd[ng] = static_cast<acc_t<T>>(r);
    }
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const int64_t ch = g * Cg + k / S;
      // y = x * scale + shift, folded per channel as on the CPU
      const double gamma = w != nullptr ? static_cast<double>(to_acc(w[ch])) : 1.0;
      const double beta = b != nullptr ? static_cast<double>(to_acc(b[ch])) : 0.0;
      const double scale = r * gamma, shift = beta - m * scale;
      ys[k] = from_acc<T>(static_cast<double>(to_acc(xs[k])) * scale + shift);
    }
  }
}

template <class T>
__global__ void group_norm_backward_dx_kernel(int64_t N, int64_t C, int64_t S, int64_t G, const T* x, const T* w,
                                              const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy, T* dx) {
  __shared__ double smem[32];
  const int64_t Cg = C / G, n = Cg * S;
  for (int64_t ng = blockIdx.x; ng < N * G; ng += gridDim.x) {
    const int64_t g = ng % G;
    const T* xs = x + ng * n;
    const T* dys = dy + ng * n;
    T* dxs = dx + ng * n;
    const double m = static_cast<double>(mean[ng]), r = static_cast<double>(rstd[ng]);
    double sg = 0, sgx = 0;  // sum(g) and sum(g * xhat) over the group, g = dy * gamma
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const double gamma = w != nullptr ? static_cast<double>(to_acc(w[g * Cg + k / S])) : 1.0;
      const double gk = gamma * static_cast<double>(to_acc(dys[k]));
      sg += gk;
      sgx += gk * (static_cast<double>(to_acc(xs[k])) - m) * r;
    }
    sg = block_reduce(sg, smem, SumOp{}, 0.0);
    sgx = block_reduce(sgx, smem, SumOp{}, 0.0);
    const double inv_n = n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
    const double mg = sg * inv_n, mgx = sgx * inv_n;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const double gamma = w != nullptr ? static_cast<double>(to_acc(w[g * Cg + k / S])) : 1.0;
      const double xhat = (static_cast<double>(to_acc(xs[k])) - m) * r;
      dxs[k] = from_acc<T>(r * (gamma * static_cast<double>(to_acc(dys[k])) - mg - xhat * mgx));
    }
  }
}

template <class T>
__global__ void group_norm_backward_dwdb_kernel(int64_t N, int64_t C, int64_t S, int64_t G, const T* x,
                                                const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy, T* dw, T* db) {
  __shared__ double smem[32];
  const int64_t Cg = C / G, per_channel = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const int64_t g = c / Cg;
    double sw = 0, sb = 0;
    for (int64_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
      const int64_t bn = j / S, i = j - bn * S;
      const int64_t k = (bn * C + c) * S + i;
      const double d = static_cast<double>(to_acc(dy[k]));
      sb += d;
      sw += d * (static_cast<double>(to_acc(x[k])) - static_cast<double>(mean[bn * G + g])) *
            static_cast<double>(rstd[bn * G + g]);
    }
    sw = block_reduce(sw, smem, SumOp{}, 0.0);
    sb = block_reduce(sb, smem, SumOp{}, 0.0);
    if (threadIdx.x == 0) {
      if (dw != nullptr) dw[c] = from_acc<T>(sw);
      if (db != nullptr) db[c] = from_acc<T>(sb);
    }
  }
}

unsigned blocks_for(int64_t items) {
  return static_cast<unsigned>(items < detail::kMaxBlocks ? items : detail::kMaxBlocks);
}

void check_group(const char* op, int64_t N, int64_t C, int64_t S, int64_t G) {
  PEFT_CHECK(N >= 0 && C >= 0 && S >= 0, op, ": negative size (N ", N, ", C ", C, ", S ", S, ")");
  PEFT_CHECK(G > 0 && C % G == 0, op, ": ", C, " channels cannot be split into ", G, " groups");
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

template <class T>
void layer_norm_forward(int64_t R, int64_t M, acc_t<T> eps, const T* x, const T* w, const T* b, T* y,
                        acc_t<T>* mean, acc_t<T>* rstd, cudaStream_t stream) {
  PEFT_CHECK(R >= 0 && M >= 0, "cuda layer_norm_forward: negative size (R ", R, ", M ", M, ")");
  if (R == 0) return;
  PEFT_CHECK(mean != nullptr && rstd != nullptr && (M == 0 || (x != nullptr && y != nullptr)),
             "cuda layer_norm_forward: null device pointer (x, y, mean or rstd)");
  layer_norm_forward_kernel<T><<<blocks_for(R), detail::block_for_row(M), 0, stream>>>(
      R, M, static_cast<double>(eps), x, w, b, y, mean, rstd);
  PEFT_KERNEL_CHECK();
}

template <class T>
void layer_norm_backward(int64_t R, int64_t M, const T* x, const T* w, const acc_t<T>* mean, const acc_t<T>* rstd,
                         const T* dy, T* dx, T* dw, T* db, cudaStream_t stream) {
  PEFT_CHECK(R >= 0 && M >= 0, "cuda layer_norm_backward: negative size (R ", R, ", M ", M, ")");
  if (M == 0) return;
  if (R > 0)
    PEFT_CHECK(x != nullptr && mean != nullptr && rstd != nullptr && dy != nullptr,
               "cuda layer_norm_backward: null device pointer (x, mean, rstd or dy)");
  if (dx != nullptr && R > 0) {
    layer_norm_backward_dx_kernel<T>
        <<<blocks_for(R), detail::block_for_row(M), 0, stream>>>(R, M, x, w, mean, rstd, dy, dx);
    PEFT_KERNEL_CHECK();
  }
  if (dw != nullptr || db != nullptr) {  // R == 0 still writes zeros, as the CPU does
    layer_norm_backward_dwdb_kernel<T><<<grid_for(M), kThreads, 0, stream>>>(R, M, x, mean, rstd, dy, dw, db);
    PEFT_KERNEL_CHECK();
  }
}

template <class T>
void group_norm_forward(int64_t N, int64_t C, int64_t S, int64_t G, acc_t<T> eps, const T* x, const T* w, const T* b,
                        T* y, acc_t<T>* mean, acc_t<T>* rstd, cudaStream_t stream) {
  check_group("cuda group_norm_forward", N, C, S, G);
  if (N == 0) return;
  PEFT_CHECK(mean != nullptr && rstd != nullptr && (C * S == 0 || (x != nullptr && y != nullptr)),
             "cuda group_norm_forward: null device pointer (x, y, mean or rstd)");
  group_norm_forward_kernel<T><<<blocks_for(N * G), detail::block_for_row((C / G) * S), 0, stream>>>(
      N, C, S, G, static_cast<double>(eps), x, w, b, y, mean, rstd);
  PEFT_KERNEL_CHECK();
}

template <class T>
void group_norm_backward(int64_t N, int64_t C, int64_t S, int64_t G, const T* x, const T* w, const acc_t<T>* mean,
                         const acc_t<T>* rstd, const T* dy, T* dx, T* dw, T* db, cudaStream_t stream) {
  check_group("cuda group_norm_backward", N, C, S, G);
  if (C == 0) return;
  if (N * S > 0)
    PEFT_CHECK(x != nullptr && mean != nullptr && rstd != nullptr && dy != nullptr,
               "cuda group_norm_backward: null device pointer (x, mean, rstd or dy)");
  if (dx != nullptr && N * S > 0) {
    group_norm_backward_dx_kernel<T><<<blocks_for(N * G), detail::block_for_row((C / G) * S), 0, stream>>>(
        N, C, S, G, x, w, mean, rstd, dy, dx);
    PEFT_KERNEL_CHECK();
  }
  if (dw != nullptr || db != nullptr) {  // N * S == 0 still writes zeros, as the CPU does
    group_norm_backward_dwdb_kernel<T>
        <<<blocks_for(C), detail::block_for_row(N * S), 0, stream>>>(N, C, S, G, x, mean, rstd, dy, dw, db);
    PEFT_KERNEL_CHECK();
  }
}

#define PEFT_INSTANTIATE(T)                                                                                       \
  template void group_norm_forward<T>(int64_t, int64_t, int64_t, int64_t, acc_t<T>, const T*, const T*, const T*, \
                                      T*, acc_t<T>*, acc_t<T>*, cudaStream_t);                                    \
  template void group_norm_backward<T>(int64_t, int64_t, int64_t, int64_t, const T*, const T*, const acc_t<T>*,   \
                                       const acc_t<T>*, const T*, T*, T*, T*, cudaStream_t);                      \
  template void layer_norm_forward<T>(int64_t, int64_t, acc_t<T>, const T*, const T*, const T*, T*, acc_t<T>*,    \
                                      acc_t<T>*, cudaStream_t);                                                   \
  template void layer_norm_backward<T>(int64_t, int64_t, const T*, const T*, const acc_t<T>*, const acc_t<T>*,    \
                                       const T*, T*, T*, T*, cudaStream_t);
PEFT_INSTANTIATE(float)
PEFT_INSTANTIATE(double)
PEFT_INSTANTIATE(Bf16)
#undef PEFT_INSTANTIATE

}  // namespace peft::kernels::cuda
