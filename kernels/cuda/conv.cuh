// kernels/cuda/conv.cuh — conv2d on the GPU, the twin of kernels/cpu/conv2d.h (PyTorch's
// semantics: cross-correlation, zero padding, stride, dilation, groups; NCHW contiguous; the
// shape comes from cpu::conv2d_shape). Two implementations behind the same shapes:
//
//   * cuDNN (conv_cudnn.cu): the convolution products through cudnnConvolutionForward /
//     BackwardData / BackwardFilter. Each returns false, having written nothing, when it cannot
//     serve the call: no cuDNN in the build, a size outside cuDNN's int range, or cuDNN
//     answering CUDNN_STATUS_NOT_SUPPORTED* for every algorithm it proposed. The caller then
//     uses the direct kernels. Bias (add and gradient) is never cuDNN's: see below.
//   * direct kernels (conv.cu): one thread per output element, summing its window; backward
//     gathers rather than scatters, so there are no atomics and results are deterministic.
//     Correctness over speed: the fallback, and the whole of conv2d in a build without cuDNN.
//
// Bias add and bias gradient are always our kernels (conv2d_add_bias, conv2d_backward_bias), so
// both paths share them. Device pointers; launchers queue on `stream` without syncing.
//
// T in float, double and Bf16 (bf16.cuh). BF16 data computes in F32 on both paths: cuDNN with
// BFLOAT16 tensors and a FLOAT convolution descriptor, the direct kernels accumulating in
// float. With cuDNN the bias is added to the already rounded BF16 output (two roundings).
#pragma once
#include <cuda_runtime.h>

#include "kernels/cpu/conv2d.h"
#include "kernels/cuda/bf16.cuh"

namespace peft::kernels::cuda {

using cpu::Conv2dShape;

// Throws unless s is what cpu::conv2d_shape returns for its own inputs, with groups dividing C
// and O and Ho, Wo > 0: "<op>: output size (3, 3) is not conv2d_shape's (4, 4) or is empty".
// Every launcher below checks this first.
void check_conv2d_shape(const char* op, const Conv2dShape& s);

// ---------------------------------------------------------------------------- direct kernels

template <class T>
void conv2d_forward_direct(const Conv2dShape& s,
                           const T* x,  // (N, C, H, W)
                           const T* w,  // (O, C/groups, kh, kw)
                           const T* b,  // (O) or nullptr
                           T* y,        // (N, O, Ho, Wo), written with =
                           cudaStream_t stream);

template <class T>
void conv2d_backward_input_direct(const Conv2dShape& s,
                                  const T* w,   // (O, C/groups, kh, kw)
                                  const T* dy,  // (N, O, Ho, Wo)
                                  T* dx,        // (N, C, H, W), written with =
                                  cudaStream_t stream);

template <class T>
void conv2d_backward_weight_direct(const Conv2dShape& s,
                                   const T* x,   // (N, C, H, W)
                                   const T* dy,  // (N, O, Ho, Wo)
                                   T* dw,        // (O, C/groups, kh, kw), written with =
                                   cudaStream_t stream);

// ---------------------------------------------------------------------------- bias

template <class T>
void conv2d_add_bias(const Conv2dShape& s,
                     const T* b,  // (O)
                     T* y,        // (N, O, Ho, Wo), y += b per channel
                     cudaStream_t stream);

template <class T>
void conv2d_backward_bias(const Conv2dShape& s,
                          const T* dy,  // (N, O, Ho, Wo)
                          T* db,        // (O), written with = (zeros for an empty batch)
                          cudaStream_t stream);

// ---------------------------------------------------------------------------- cuDNN
// `device` is the CUDA device the pointers live on (its handle; workspace from its caching
// allocator) and must be current. F32 runs in TF32 only when `tf32` (CUDNN_DEFAULT_MATH; else
// CUDNN_FMA_MATH); F64 always in F64. Outputs are written with = (beta 0). Returns false as
// described at the top of this file; throws peft::Error on any other cuDNN failure.

template <class T>
bool conv2d_forward_cudnn(int device, bool tf32, const Conv2dShape& s, const T* x, const T* w, T* y,
                          cudaStream_t stream);

template <class T>
bool conv2d_backward_input_cudnn(int device, bool tf32, const Conv2dShape& s, const T* w, const T* dy, T* dx,
                                 cudaStream_t stream);

template <class T>
bool conv2d_backward_weight_cudnn(int device, bool tf32, const Conv2dShape& s, const T* x, const T* dy, T* dw,
                                  cudaStream_t stream);

}  // namespace peft::kernels::cuda
