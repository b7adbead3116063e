// kernels/cuda/launch.cuh — the preamble of every core/cuda_ops.h entry point: the tensor's
// device made current (a launch goes to the current device, and the device's stream must belong
// to it) and that stream. Internal to the kernels/cuda bridges.
#pragma once
#include <cuda_runtime.h>

#include "core/device.h"
#include "core/error.h"
#include "kernels/cuda/memory.cuh"

namespace peft::cuda_ops::detail {

struct Launch {
  explicit Launch(Device dev) : guard(check(dev)), stream(cuda::stream(dev.index)) {}
  cuda::DeviceGuard guard;
  cudaStream_t stream;

 private:
  static int check(Device dev) {
    PEFT_CHECK(dev.is_cuda(), "cuda_ops: expected a CUDA device, got ", dev.str());
    cuda::check_device(dev);
    return dev.index;
  }
};

}  // namespace peft::cuda_ops::detail
