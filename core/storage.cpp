#include "core/storage.h"

#include <cstdlib>

#include "core/cuda_api.h"
#include "core/error.h"
#include "core/log.h"

namespace peft {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_meta()) return;  // shapes only: no memory, data() stays null, nothing owned
  if (device.is_cuda()) {
    // Through the device's caching allocator; it throws (out of memory, no such device).
    data_ = cuda::device_alloc(device, nbytes);
    owned_ = true;
    return;
  }
  size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  data_ = std::aligned_alloc(64, rounded);
  PEFT_CHECK(data_ != nullptr, "Storage: cannot allocate ", nbytes, " bytes on the CPU");
  owned_ = true;
}

Storage::Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keepalive)
    : data_(data), nbytes_(nbytes), device_(device), keepalive_(std::move(keepalive)) {}

Storage::~Storage() {
  if (!owned_) return;
  if (device_.is_cpu()) {
    std::free(data_);
    return;
  }
  try {
    cuda::device_free(device_, data_);
  } catch (const std::exception& e) {
    // A destructor cannot throw: the block is reported and lost to the cache.
    try {
      log(LogLevel::Error, std::string("Storage: freeing ") + device_.str() + " memory failed: " + e.what());
    } catch (...) {
    }
  }
}

}  // namespace peft
