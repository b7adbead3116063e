// kernels/cuda/dropout.cuh — dropout with a Philox mask regenerated from (seed, offset), the GPU
// twin of kernels/cpu/dropout_philox.h: same decision per element (philox_uniform(seed, offset,
// i) < float(p) drops it), same scale T(1 / (1 - p)), so both devices produce the same mask and
// backward needs no stored mask. Device pointers; launchers queue on `stream` without syncing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace peft::kernels::cuda {

// mask[i] = 1 when element i is kept, 0 when dropped (for tests and for callers that want it).
void dropout_mask(int64_t n, double p, uint64_t seed, uint64_t offset,
                  uint8_t* mask,  // (n)
                  cudaStream_t stream);

// y = x * keep(i) / (1 - p); 0 <= p <= 1 (checked); y may alias x.
template <class T>
void dropout_forward(int64_t n, double p, uint64_t seed, uint64_t offset,
                     const T* x,  // (n)
                     T* y,        // (n), written with =
                     cudaStream_t stream);

// dx = dy * keep(i) / (1 - p), the mask regenerated from the forward's (seed, offset).
template <class T>
void dropout_backward(int64_t n, double p, uint64_t seed, uint64_t offset,
                      const T* dy,  // (n)
                      T* dx,        // (n), written with =
                      cudaStream_t stream);

}  // namespace peft::kernels::cuda
