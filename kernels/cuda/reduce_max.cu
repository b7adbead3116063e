// kernels/cuda/reduce_max.cu — max / argmax over rows, and the backward scatter.
//
// One block per row (grid-stride over rows): each thread scans a strided slice keeping its best
// (value, index), then a shared-memory tree merges the pairs. The merge is an order on pairs
// (NaN first, then larger value, then smaller index), so the result is the CPU's left-to-right
// answer whatever the block size: the first NaN if any, else the first maximum.
#include "kernels/cuda/reduce_max.cuh"

#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace peft::kernels::cuda {

namespace {

using detail::block_for_row;
using detail::grid_for;
using detail::kMaxBlocks;
using detail::kThreads;

// True when (va, ia) should be chosen over (vb, ib).
template <class T>
__device__ __forceinline__ bool better(T va, int64_t ia, T vb, int64_t ib) {
  const bool na = va != va, nb = vb != vb;
  if (na || nb) return na && (!nb || ia < ib);
  if (va != vb) return va > vb;
  return ia < ib;
}

template <class T>
__global__ void max_rows_kernel(int64_t nrows, int64_t n, const T* __restrict__ x, T* __restrict__ values,
                                int64_t* __restrict__ indices) {
  extern __shared__ __align__(8) unsigned char smem_raw[];
  // Indices first: int64 alignment covers T (float / double) that follows.
  int64_t* s_idx = reinterpret_cast<int64_t*>(smem_raw);
  T* s_val = reinterpret_cast<T*>(s_idx + blockDim.x);
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    const T* row = x + r * n;
    int64_t bi = -1;
    T bv = T(0);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const T v = row[j];
      if (bi < 0 || better(v, j, bv, bi)) {
        bv = v;
        bi = j;
      }
    }
    s_val[threadIdx.x] = bv;
    s_idx[threadIdx.x] = bi;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half >>= 1) {  // blockDim.x is a power of two
      if (threadIdx.x < half) {
        const int64_t oi = s_idx[threadIdx.x + half];
        if (oi >= 0 && (s_idx[threadIdx.x] < 0 ||
                        better(s_val[threadIdx.x + half], oi, s_val[threadIdx.x], s_idx[threadIdx.x]))) {
          s_val[threadIdx.x] = s_val[threadIdx.x + half];
          s_idx[threadIdx.x] = oi;
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      values[r] = s_val[0];
      indices[r] = s_idx[0];
    }
    __syncthreads();  // s_val / s_idx are rewritten for the next row
  }
}

template <class T>
__global__ void max_scatter_kernel(int64_t total, int64_t n, int64_t inner, const int64_t* __restrict__ idx,
                                   const T* __restrict__ gv, T* __restrict__ gi) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < total; r += step) {
    const int64_t p = r / inner, q = r - p * inner;
    gi[(p * n + idx[r]) * inner + q] = gv[r];
  }
}

}  // namespace

template <class T>
void max_lastdim(int64_t nrows, int64_t n, const T* x, T* values, int64_t* indices, cudaStream_t stream) {
  PEFT_CHECK(nrows >= 0 && n >= 1, "cuda max: expected rows of at least one element, got ", nrows, " x ", n);
  if (nrows == 0) return;
  PEFT_CHECK(x != nullptr && values != nullptr && indices != nullptr, "cuda max: null device pointer");
  const int threads = block_for_row(n);
  const unsigned blocks = static_cast<unsigned>(nrows < kMaxBlocks ? nrows : kMaxBlocks);
  const size_t smem = static_cast<size_t>(threads) * (sizeof(int64_t) + sizeof(T));
  max_rows_kernel<T><<<blocks, threads, smem, stream>>>(nrows, n, x, values, indices);
  PEFT_KERNEL_CHECK();
}

template <class T>
void max_backward_scatter(int64_t outer, int64_t n, int64_t inner, const int64_t* idx, const T* gv, T* gi,
                          cudaStream_t stream) {
  PEFT_CHECK(outer >= 0 && n >= 1 && inner >= 0, "cuda max_backward: bad shape ", outer, " x ", n, " x ", inner);
  const int64_t total = outer * inner;
  if (total == 0) return;
  PEFT_CHECK(idx != nullptr && gv != nullptr && gi != nullptr, "cuda max_backward: null device pointer");
  max_scatter_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(total, n, inner, idx, gv, gi);
  PEFT_KERNEL_CHECK();
}

template void max_lastdim<float>(int64_t, int64_t, const float*, float*, int64_t*, cudaStream_t);
template void max_lastdim<double>(int64_t, int64_t, const double*, double*, int64_t*, cudaStream_t);
template void max_backward_scatter<float>(int64_t, int64_t, int64_t, const int64_t*, const float*, float*,
                                          cudaStream_t);
template void max_backward_scatter<double>(int64_t, int64_t, int64_t, const int64_t*, const double*, double*,
                                           cudaStream_t);

}  // namespace peft::kernels::cuda
