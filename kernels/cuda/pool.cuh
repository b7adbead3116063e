// kernels/cuda/pool.cuh — the GPU twin of kernels/cpu/pool.h (avg_pool2d with PyTorch's exact
// window / divisor semantics, NCHW contiguous; the shape comes from cpu::pool2d_shape) and a
// general adaptive_avg_pool2d (PyTorch's window start = floor(o * I / O), end = ceil((o + 1) *
// I / O); the CPU engine only has the (1, 1) case, as a mean). Device pointers; launchers queue
// on `stream` without syncing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/pool.h"

namespace peft::kernels::cuda {

using cpu::Pool2dShape;

// s must be what cpu::pool2d_shape returns for its inputs (checked), with Ho, Wo > 0.
template <class T>
void avg_pool2d_forward(const Pool2dShape& s,
                        const T* x,  // (N, C, H, W)
                        T* y,        // (N, C, Ho, Wo), written with =
                        cudaStream_t stream);

template <class T>
void avg_pool2d_backward(const Pool2dShape& s,
                         const T* dy,  // (N, C, Ho, Wo)
                         T* dx,        // (N, C, H, W), written with =
                         cudaStream_t stream);

template <class T>
void adaptive_avg_pool2d_forward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                                 const T* x,  // (N, C, H, W)
                                 T* y,        // (N, C, Ho, Wo), written with =
                                 cudaStream_t stream);

template <class T>
void adaptive_avg_pool2d_backward(int64_t N, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                                  const T* dy,  // (N, C, Ho, Wo)
                                  T* dx,        // (N, C, H, W), written with =
                                  cudaStream_t stream);

}  // namespace peft::kernels::cuda
