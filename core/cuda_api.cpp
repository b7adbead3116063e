// core/cuda_api.h in a build without the CUDA backend: every entry point refuses clearly,
// except host-to-host copies, which need no GPU. (With PEFT_WITH_CUDA, kernels/cuda/memory.cu
// defines these instead.)
#ifndef PEFT_WITH_CUDA
#include "core/cuda_api.h"

#include <cstring>

#include "core/error.h"

namespace peft::cuda {

namespace {
[[noreturn]] void unavailable(const char* what, Device device) {
  PEFT_ERROR(what, ": ", device.str(), ": CUDA is not available in this build (configured with PEFT_CUDA=OFF "
             "or without nvcc)");
}
}  // namespace

void empty_cache(Device device) { unavailable("empty_cache", device); }
AllocatorStats memory_stats(Device device) { unavailable("memory_stats", device); }
void reset_peak_memory_stats(Device device) { unavailable("reset_peak_memory_stats", device); }
void synchronize(Device device) { unavailable("synchronize", device); }
void* device_alloc(Device device, size_t) { unavailable("allocate", device); }
void device_free(Device device, void*) { unavailable("free", device); }
void device_memset_zero(void*, Device device, size_t) { unavailable("memset", device); }

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    if (nbytes > 0) std::memcpy(dst, src, nbytes);
    return;
  }
  unavailable("copy", dst_device.is_cuda() ? dst_device : src_device);
}

}  // namespace peft::cuda
#endif
