// kernels/cuda/norm.cuh — the GPU twin of kernels/cpu/norm.h: layer_norm and group_norm,
// forward and backward, same arguments and semantics (biased variance, rstd = 1 / sqrt(var +
// eps), mean / rstd saved by forward, every output written with =, null dx / dw / db skipped,
// null w / b meaning 1 / 0). Device pointers; launchers queue on `stream` without syncing.
//
// T in float, double, Bf16 (bf16.cuh). The statistics mean / rstd (and eps) are in the compute
// type acc_t<T>: F32 for BF16 data, as PyTorch keeps them, since a BF16 rstd would put a
// ~0.4% error into every normalised element and its gradient.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/bf16.cuh"

namespace peft::kernels::cuda {

// x viewed as (N, C, S); C split into G groups of C/G consecutive channels (C % G == 0, checked).
template <class T>
void group_norm_forward(int64_t N, int64_t C, int64_t S, int64_t G, acc_t<T> eps,
                        const T* x,          // (N, C, S)
                        const T* w,          // (C) or nullptr
                        const T* b,          // (C) or nullptr
                        T* y,                // (N, C, S)
                        acc_t<T>* mean,      // (N, G)
                        acc_t<T>* rstd,      // (N, G)
                        cudaStream_t stream);

template <class T>
void group_norm_backward(int64_t N, int64_t C, int64_t S, int64_t G,
                         const T* x,                    // (N, C, S)
                         const T* w,                    // (C) or nullptr
                         const acc_t<T>* mean,          // (N, G)
                         const acc_t<T>* rstd,          // (N, G)
                         const T* dy,                   // (N, C, S)
                         T* dx,                         // (N, C, S) or nullptr
                         T* dw, T* db,                  // (C) each, or nullptr
                         cudaStream_t stream);

// Each of R rows normalised over its M contiguous elements.
template <class T>
void layer_norm_forward(int64_t R, int64_t M, acc_t<T> eps,
                        const T* x,          // (R, M)
                        const T* w,          // (M) or nullptr
                        const T* b,          // (M) or nullptr
                        T* y,                // (R, M)
                        acc_t<T>* mean,      // (R)
                        acc_t<T>* rstd,      // (R)
                        cudaStream_t stream);

template <class T>
void layer_norm_backward(int64_t R, int64_t M,
                         const T* x,                    // (R, M)
                         const T* w,                    // (M) or nullptr
                         const acc_t<T>* mean,          // (R)
                         const acc_t<T>* rstd,          // (R)
                         const T* dy,                   // (R, M)
                         T* dx,                         // (R, M) or nullptr
                         T* dw, T* db,                  // (M) each, or nullptr
                         cudaStream_t stream);

}  // namespace peft::kernels::cuda
