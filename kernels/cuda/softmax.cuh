// kernels/cuda/softmax.cuh — the GPU twin of kernels/cpu/softmax.h (softmax / log_softmax over
// the middle dim of (outer, D, inner), forward and backward), plus the per-sample nll_loss that
// core/ops_nn.cpp computes with a CPU loop (cross_entropy = log_softmax + nll). Device pointers;
// launchers queue on `stream` without syncing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace peft::kernels::cuda {

// y = exp(x - max) / sum(exp(x - max)), or log of it when log; written with =.
template <class T>
void softmax_forward(int64_t outer, int64_t D, int64_t inner,
                     const T* x,  // (outer, D, inner)
                     T* y,        // (outer, D, inner)
                     bool log, cudaStream_t stream);

// softmax dx = y * (dy - sum(dy * y)), log_softmax dx = dy - exp(y) * sum(dy); sums over D.
template <class T>
void softmax_backward(int64_t outer, int64_t D, int64_t inner,
                      const T* y,   // (outer, D, inner) forward output
                      const T* dy,  // (outer, D, inner)
                      T* dx,        // (outer, D, inner), written with =
                      bool log, cudaStream_t stream);

// per[i] = target[i] == ignore_index ? 0 : -logp[i, target[i]] (reduction "none"; "sum" /
// "mean" are a sum_reduce and a scale by the caller). A target outside [0, C) other than
// ignore_index gives 0 and is recorded in first_bad (kernels/cuda/index_check.cuh).
template <class T>
void nll_loss_forward(int64_t N, int64_t C,
                      const T* logp,           // (N, C)
                      const int64_t* target,   // (N)
                      int64_t ignore_index,
                      T* per,                  // (N), written with =
                      int64_t* first_bad,      // device scalar or nullptr
                      cudaStream_t stream);

// dlogp = 0 except dlogp[i, target[i]] = -(reduced ? g[0] * factor : g[i]) for non-ignored i
// (core/ops_nn.cpp's NllLossBackward; factor = 1 / count for "mean", 1 for "sum").
template <class T>
void nll_loss_backward(int64_t N, int64_t C,
                       const int64_t* target,  // (N)
                       int64_t ignore_index,
                       const T* g,             // (1) when reduced, else (N)
                       bool reduced, double factor,
                       T* dlogp,               // (N, C), written with =
                       int64_t* first_bad,     // device scalar or nullptr
                       cudaStream_t stream);

}  // namespace peft::kernels::cuda
