// kernels/cuda/embedding.cuh — the GPU twin of kernels/cpu/embedding.h: gather forward and a
// scatter-add backward. Ids are device memory, so their range is checked in the kernel and
// reported through kernels/cuda/index_check.cuh (first_bad; nullptr when the caller has
// validated the ids itself). Device pointers; launchers queue on `stream` without syncing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace peft::kernels::cuda {

// out[i] = weight[ids[i]]. An id outside [0, V) gives a row of zeros and is recorded in first_bad.
template <class T>
void embedding_forward(int64_t n, int64_t dim, int64_t V,
                       const T* weight,     // (V, dim)
                       const int64_t* ids,  // (n)
                       T* out,              // (n, dim), written with =
                       int64_t* first_bad,  // device scalar or nullptr
                       cudaStream_t stream);

// dw is zeroed, then dw[ids[i]] += dy[i] for every i whose id != padding_idx (padding_idx < 0:
// none). Repeated ids accumulate with atomicAdd, so in F32 the summation order (and the last
// bits of dw) can change from run to run; out-of-range ids are skipped and recorded.
template <class T>
void embedding_backward(int64_t n, int64_t dim, int64_t V,
                        const int64_t* ids,  // (n)
                        const T* dy,         // (n, dim)
                        T* dw,               // (V, dim), written with =
                        int64_t padding_idx,
                        int64_t* first_bad,  // device scalar or nullptr
                        cudaStream_t stream);

}  // namespace peft::kernels::cuda
