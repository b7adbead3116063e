// Per-device CUDA state, created lazily on first use and then kept for the process: the
// caching allocator (over cudaMalloc/cudaFree), the device's one stream and a cuBLAS handle
// bound to it. Everything the engine queues on a device goes on that stream, which is what
// lets the caching allocator reuse a freed block at once (see core/allocator.h). Also defines
// core/cuda_api.h (alloc, free, copies, memset, statistics) for CUDA builds.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/allocator.h"
#include "core/cuda_api.h"

namespace peft::cuda {

// Throws unless `device` is a CUDA device present on this machine:
// "cuda:0 is not available: this machine has 0 CUDA devices".
void check_device(Device device);
// The device's stream (non-blocking with respect to the legacy default stream).
cudaStream_t stream(int device);
// A cuBLAS handle for the device, bound to stream(device).
cublasHandle_t cublas(int device);
CachingAllocator& allocator(int device);
// The device's cuBLASLt handle (kernels/cuda/gemm_lt.cuh; streams are passed per call) and its
// workspace: kLtWorkspaceBytes from the caching allocator, taken on first use and kept (it shows
// in memory_stats, as PyTorch's cuBLAS workspace does in its allocator's).
constexpr size_t kLtWorkspaceBytes = size_t(8) << 20;
cublasLtHandle_t cublas_lt(int device);
void* lt_workspace(int device);

// RAII: makes `device` the calling thread's current device and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;  // -1: nothing to restore
};

}  // namespace peft::cuda
