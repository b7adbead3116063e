// Device discovery. A machine without a GPU (or without a driver) makes cudaGetDeviceCount
// fail: that is reported as zero devices so CPU-only machines run the same binaries.
#include <cuda_runtime.h>

#include <cstring>

#include "kernels/cuda/runtime.cuh"

namespace peft::cuda {

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later probes start clean
    return 0;
  }
  return n;
}

const char* device_name(int index) noexcept {
  static thread_local cudaDeviceProp prop;
  if (index < 0 || index >= device_count()) return "";
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return prop.name;
}

}  // namespace peft::cuda
