// kernels/cuda/embedding.cu — embedding gather / scatter-add.
//
// One thread per output element (token i, column c) in a grid-stride loop, so consecutive
// threads touch consecutive columns of one row: coalesced reads of weight / dy and writes of
// out / dw. Backward uses atomicAdd into dw because repeated ids are the common case (a sort by
// id would make it deterministic; not worth it until a test or a user needs bit-stable dw).
// Double atomicAdd needs sm_60+, below the sm_80 this project builds for.
//
// BF16 (bf16.cuh): forward moves the bits. Backward must not add in BF16 (each atomic add would
// round to 8 mantissa bits, and a row hit by many ids would drift), so it adds into an F32
// scratch (V, dim) from the device's caching allocator and rounds each dw element once at the
// end. A BF16 atomicAdd (sm_80+) would save the scratch but not the precision.
#include "kernels/cuda/embedding.cuh"

#include <type_traits>

#include "core/cuda_api.h"
#include "core/error.h"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/memory.cuh"

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
      out[e] = from_acc<T>(0);
    } else {
      out[e] = weight[id * dim + c];
    }
  }
}

// acc (V, dim): dw itself, or the F32 scratch for BF16; zeroed by the launcher.
template <class T>
__global__ void embedding_backward_kernel(int64_t n, int64_t dim, int64_t V, const int64_t* ids, const T* dy,
                                          acc_t<T>* acc, int64_t padding_idx, int64_t* first_bad) {
  const int64_t total = n * dim, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t i = e / dim, c = e - i * dim;
    const int64_t id = ids[i];
    if (padding_idx >= 0 && id == padding_idx) continue;
    if (id < 0 || id >= V) {
      if (c == 0) detail::record_bad_index(first_bad, i);
      continue;
    }
    atomicAdd(acc + id * dim + c, to_acc(dy[e]));
  }
}

template <class T>
__global__ void round_to_storage_kernel(int64_t total, const acc_t<T>* acc, T* out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step)
    out[e] = from_acc<T>(acc[e]);
}

// The F32 accumulator of a BF16 backward, from the current device's caching allocator. Freed
// as soon as its last kernel is queued: safe on the device's own stream (the allocator's
// contract, core/allocator.h); another stream is synchronised first.
class AccScratch {
 public:
  AccScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    int d = 0;
    PEFT_CUDA_CHECK(cudaGetDevice(&d));
    dev_ = Device::cuda(d);
    p_ = static_cast<float*>(peft::cuda::device_alloc(dev_, bytes));
  }
  ~AccScratch() {
    if (stream_ != peft::cuda::stream(dev_.index)) (void)cudaStreamSynchronize(stream_);
    peft::cuda::device_free(dev_, p_);
  }
  AccScratch(const AccScratch&) = delete;
  AccScratch& operator=(const AccScratch&) = delete;
  float* get() const { return p_; }

 private:
  cudaStream_t stream_;
  Device dev_ = Device::cpu();
  float* p_ = nullptr;
};

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
  const int64_t total = V * dim;
  if (n > 0)
    PEFT_CHECK(ids != nullptr && dy != nullptr, "cuda embedding_backward: null device pointer (ids or dy)");
  if constexpr (std::is_same<T, acc_t<T>>::value) {
    PEFT_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(total) * sizeof(T), stream));
    if (n == 0) return;
    embedding_backward_kernel<T>
        <<<grid_for(n * dim), kThreads, 0, stream>>>(n, dim, V, ids, dy, dw, padding_idx, first_bad);
    PEFT_KERNEL_CHECK();
  } else {
    if (n == 0) {  // all-zero bits are +0 in BF16 too
      PEFT_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(total) * sizeof(T), stream));
      return;
    }
    AccScratch acc(static_cast<size_t>(total) * sizeof(acc_t<T>), stream);
    PEFT_CUDA_CHECK(cudaMemsetAsync(acc.get(), 0, static_cast<size_t>(total) * sizeof(acc_t<T>), stream));
    embedding_backward_kernel<T>
        <<<grid_for(n * dim), kThreads, 0, stream>>>(n, dim, V, ids, dy, acc.get(), padding_idx, first_bad);
    PEFT_KERNEL_CHECK();
    round_to_storage_kernel<T><<<grid_for(total), kThreads, 0, stream>>>(total, acc.get(), dw);
    PEFT_KERNEL_CHECK();
  }
}

template void embedding_forward<float>(int64_t, int64_t, int64_t, const float*, const int64_t*, float*, int64_t*,
                                       cudaStream_t);
template void embedding_forward<double>(int64_t, int64_t, int64_t, const double*, const int64_t*, double*, int64_t*,
                                        cudaStream_t);
template void embedding_backward<float>(int64_t, int64_t, int64_t, const int64_t*, const float*, float*, int64_t,
                                        int64_t*, cudaStream_t);
template void embedding_backward<double>(int64_t, int64_t, int64_t, const int64_t*, const double*, double*,
                                         int64_t, int64_t*, cudaStream_t);
template void embedding_forward<Bf16>(int64_t, int64_t, int64_t, const Bf16*, const int64_t*, Bf16*, int64_t*,
                                      cudaStream_t);
template void embedding_backward<Bf16>(int64_t, int64_t, int64_t, const int64_t*, const Bf16*, Bf16*, int64_t,
                                       int64_t*, cudaStream_t);

}  // namespace peft::kernels::cuda
