// Checks for every CUDA runtime call, cuBLAS call and kernel launch (DESIGN.md decision 5):
// a failure throws peft::Error with file:line, the expression as written and the library's
// own name and description of the error. Launch errors are not sticky, so a check right after
// each launch is what ties the error to the kernel that caused it; errors from inside a
// running kernel surface at the next synchronising call, which is checked too.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.h"

namespace peft::cuda::detail {

[[noreturn]] inline void throw_cuda_error(const char* file, int line, const char* expr, cudaError_t err) {
  // Clear the error state so the next check does not report this one again.
  (void)cudaGetLastError();
  ::peft::detail::throw_error(file, line, ::peft::detail::concat("CUDA error: ", expr, " failed: ",
                                                                cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
}

[[noreturn]] inline void throw_cublas_error(const char* file, int line, const char* expr, cublasStatus_t st) {
  ::peft::detail::throw_error(file, line, ::peft::detail::concat("cuBLAS error: ", expr, " failed: ",
                                                                cublasGetStatusName(st), " (", cublasGetStatusString(st), ")"));
}

}  // namespace peft::cuda::detail

#define PEFT_CUDA_CHECK(expr)                                                          \
  do {                                                                                 \
    const cudaError_t peft_cuda_err_ = (expr);                                         \
    if (peft_cuda_err_ != cudaSuccess)                                                 \
      ::peft::cuda::detail::throw_cuda_error(__FILE__, __LINE__, #expr, peft_cuda_err_); \
  } while (0)

#define PEFT_CUBLAS_CHECK(expr)                                                             \
  do {                                                                                      \
    const cublasStatus_t peft_cublas_st_ = (expr);                                          \
    if (peft_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                           \
      ::peft::cuda::detail::throw_cublas_error(__FILE__, __LINE__, #expr, peft_cublas_st_); \
  } while (0)

// Right after `kernel<<<grid, block, smem, stream>>>(...)`: reports a bad launch configuration
// (or an earlier asynchronous error) at the launch site.
#define PEFT_KERNEL_CHECK()                                                                   \
  do {                                                                                        \
    const cudaError_t peft_cuda_err_ = cudaGetLastError();                                    \
    if (peft_cuda_err_ != cudaSuccess)                                                        \
      ::peft::cuda::detail::throw_cuda_error(__FILE__, __LINE__, "kernel launch", peft_cuda_err_); \
  } while (0)
