// kernels/cuda/cudnn_utils.cuh — what every cuDNN caller shares (builds with PEFT_WITH_CUDNN
// only; nothing here is declared otherwise): PEFT_CUDNN_CHECK, the per-device cuDNN handle,
// and owning wrappers for the legacy API's descriptors.
//
// One handle per device, created lazily and kept for the process (as the cuBLAS handle in
// memory.cu, for the same reasons). cuDNN handles are not safe to use from two threads at
// once, so callers hold cudnn_mutex() from setting the handle's stream to queuing the last
// call that uses it.
#pragma once
#ifdef PEFT_WITH_CUDNN
#include <cuda_runtime.h>
#include <cudnn.h>

#include <mutex>

#include "core/error.h"

namespace peft::cuda::detail {

// "cuDNN error: <expr> failed: CUDNN_STATUS_... ", plus cuDNN's own last-error text
// (cudnnGetLastErrorString, cuDNN >= 9), which often names the parameter it disliked.
[[noreturn]] void throw_cudnn_error(const char* file, int line, const char* expr, cudnnStatus_t st);

}  // namespace peft::cuda::detail

#define PEFT_CUDNN_CHECK(expr)                                                            \
  do {                                                                                    \
    const cudnnStatus_t peft_cudnn_st_ = (expr);                                          \
    if (peft_cudnn_st_ != CUDNN_STATUS_SUCCESS)                                           \
      ::peft::cuda::detail::throw_cudnn_error(__FILE__, __LINE__, #expr, peft_cudnn_st_); \
  } while (0)

namespace peft::cuda {

// The device's cuDNN handle (created on first use with `device` current). Not bound to a
// stream once and for all: callers set the stream they queue on (cudnnSetStream) under
// cudnn_mutex(), so kernel-level callers may pass their own.
cudnnHandle_t cudnn(int device);
std::mutex& cudnn_mutex();

// True for the statuses that mean "this configuration is not implemented", as opposed to a bad
// call or a failure: CUDNN_STATUS_NOT_SUPPORTED, and in cuDNN 9 its whole 3000 category
// (NOT_SUPPORTED_SHAPE, _LAYOUT, _PADDING, ...).
inline bool cudnn_not_supported(cudnnStatus_t st) {
#if CUDNN_MAJOR >= 9
  return static_cast<int>(st) / 1000 == static_cast<int>(CUDNN_STATUS_NOT_SUPPORTED) / 1000;
#else
  return st == CUDNN_STATUS_NOT_SUPPORTED;
#endif
}

// ---------------------------------------------------------------------------- descriptors

class TensorDesc {
 public:
  TensorDesc() { PEFT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_)); }
  ~TensorDesc() { (void)cudnnDestroyTensorDescriptor(d_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc() { PEFT_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_)); }
  ~FilterDesc() { (void)cudnnDestroyFilterDescriptor(d_); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

class ConvDesc {
 public:
  ConvDesc() { PEFT_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_)); }
  ~ConvDesc() { (void)cudnnDestroyConvolutionDescriptor(d_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

}  // namespace peft::cuda
#endif  // PEFT_WITH_CUDNN
