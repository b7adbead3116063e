// kernels/cuda/cudnn_utils.cu — the per-device cuDNN handles and the cuDNN error text (see
// cudnn_utils.cuh), and core/cuda_api.h's cudnn_version() for CUDA builds with or without cuDNN.
//
// Handles are created on first use and deliberately never destroyed, like the cuBLAS handles
// (memory.cu): at exit the CUDA runtime may already be unloaded.
#include "core/cuda_api.h"
#include "kernels/cuda/cudnn_utils.cuh"

#ifdef PEFT_WITH_CUDNN
#include <string>

#include "kernels/cuda/memory.cuh"
#include "kernels/cuda/runtime.cuh"

namespace peft::cuda {

namespace detail {

void throw_cudnn_error(const char* file, int line, const char* expr, cudnnStatus_t st) {
  char last[512] = {0};
#if CUDNN_MAJOR >= 9
  cudnnGetLastErrorString(last, sizeof(last));
  last[sizeof(last) - 1] = '\0';
#endif
  const std::string extra = last[0] != '\0' ? std::string("; cuDNN says: ") + last : std::string();
  ::peft::detail::throw_error(file, line, ::peft::detail::concat("cuDNN error: ", expr, " failed: ",
                                                                cudnnGetErrorString(st), extra));
}

}  // namespace detail

namespace {

struct HandleSlot {
  std::once_flag once;
  cudnnHandle_t handle = nullptr;
};

HandleSlot& slot(int device) {
  static const int n = device_count();
  static HandleSlot* const slots = new HandleSlot[n > 0 ? n : 1];
  return slots[device];
}

}  // namespace

cudnnHandle_t cudnn(int device) {
  check_device(Device::cuda(device));
  HandleSlot& sl = slot(device);
  // call_once: an exception leaves the flag unset, so a later call tries again.
  std::call_once(sl.once, [&] {
    DeviceGuard g(device);
    cudnnHandle_t h = nullptr;
    PEFT_CUDNN_CHECK(cudnnCreate(&h));
    sl.handle = h;
  });
  return sl.handle;
}

std::mutex& cudnn_mutex() {
  static std::mutex* const m = new std::mutex;  // never destroyed: see the file comment
  return *m;
}

int cudnn_version() { return static_cast<int>(cudnnGetVersion()); }

}  // namespace peft::cuda

#else  // !PEFT_WITH_CUDNN

namespace peft::cuda {
int cudnn_version() { return 0; }
}  // namespace peft::cuda

#endif
