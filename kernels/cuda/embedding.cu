// kernels/cuda/embedding.cu — embedding gather / scatter-add.
//
// One thread per output element (token i, column c) in a grid-stride loop, so consecutive
// threads touch consecutive columns of one row: coalesced reads of weight / dy and writes of
// out / dw. Backward uses atomicAdd into dw because repeated ids are the common case (a sort by
// id would make it deterministic; not worth it until a test or a user needs bit-stable dw).
// Double atomicAdd needs sm_60+, below the sm_80 this project builds for.
#include "kernels/cuda/embedding.cuh"

#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace peft::kernels::cuda {

namespace {

using detail::grid_for;
using detail::kThreads;

// ---------------------------------------------------------------------------- kernels

template <class T>
__global__ void embedding_forward_kernel(int64_t n, int64_t dim, int64_t V, const T* weight, const int64_t* ids,
                                         T* out, int64_t* first_bad) {
  const int64_t total = n * dim, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t i = e / dim, c = e - i * dim;
    const int64_t id = ids[i];
    if (id < 0 || id >= V) {
      if (c == 0) detail::record_bad_index(first_bad, i);
      out[e] = T(0);
    } else {
      out[e] = weight[id * dim + c];
    }
  }
}

template <class T>
__global__ void embedding_backward_kernel(int64_t n, int64_t dim, int64_t V, const int64_t* ids, const T* dy, T* dw,
                                          int64_t padding_idx, int64_t* first_bad) {
  const int64_t total = n * dim, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t i = e / dim, c = e - i * dim;
    const int64_t id = ids[i];
    if (padding_idx >= 0 && id == padding_idx) continue;
    if (id < 0 || id >= V) {
      if (c == 0) detail::record_bad_index(first_bad, i);
      continue;
    }
    atomicAdd(dw + id * dim + c, dy[e]);
  }
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

template <class T>
void embedding_forward(int64_t n, int64_t dim, int64_t V, const T* weight, const int64_t* ids, T* out,
                       int64_t* first_bad, cudaStream_t stream) {
  PEFT_CHECK(n >= 0 && dim >= 0 && V >= 0, "cuda embedding_forward: negative size (n ", n, ", dim ", dim, ", V ", V,
             ")");
  if (n == 0 || dim == 0) return;
  PEFT_CHECK(weight != nullptr && ids != nullptr && out != nullptr,
             "cuda embedding_forward: null device pointer (weight, ids or out)");
  embedding_forward_kernel<T><<<grid_for(n * dim), kThreads, 0, stream>>>(n, dim, V, weight, ids, out, first_bad);
  PEFT_KERNEL_CHECK();
}

template <class T>
void embedding_backward(int64_t n, int64_t dim, int64_t V, const int64_t* ids, const T* dy, T* dw,
                        int64_t padding_idx, int64_t* first_bad, cudaStream_t stream) {
  PEFT_CHECK(n >= 0 && dim >= 0 && V >= 0, "cuda embedding_backward: negative size (n ", n, ", dim ", dim, ", V ",
             V, ")");
  if (V * dim == 0) return;
  PEFT_CHECK(dw != nullptr, "cuda embedding_backward: null device pointer dw");
  PEFT_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(V * dim) * sizeof(T), stream));
  if (n == 0) return;
  PEFT_CHECK(ids != nullptr && dy != nullptr, "cuda embedding_backward: null device pointer (ids or dy)");
  embedding_backward_kernel<T>
      <<<grid_for(n * dim), kThreads, 0, stream>>>(n, dim, V, ids, dy, dw, padding_idx, first_bad);
  PEFT_KERNEL_CHECK();
}

template void embedding_forward<float>(int64_t, int64_t, int64_t, const float*, const int64_t*, float*, int64_t*,
                                       cudaStream_t);
template void embedding_forward<double>(int64_t, int64_t, int64_t, const double*, const int64_t*, double*, int64_t*,
                                        cudaStream_t);
template void embedding_backward<float>(int64_t, int64_t, int64_t, const int64_t*, const float*, float*, int64_t,
                                        int64_t*, cudaStream_t);
template void embedding_backward<double>(int64_t, int64_t, int64_t, const int64_t*, const double*, double*,
                                         int64_t, int64_t*, cudaStream_t);

}  // namespace peft::kernels::cuda
