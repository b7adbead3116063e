#include "core/storage.h"

#include <cstdlib>

#include "core/error.h"

namespace peft {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device), owned_(true) {
  PEFT_CHECK(device.is_cpu(), "Storage: device ", device.str(), " is not available in this build path");
  size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  data_ = std::aligned_alloc(64, rounded);
  PEFT_CHECK(data_ != nullptr, "Storage: cannot allocate ", nbytes, " bytes on the CPU");
}

Storage::Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keepalive)
    : data_(data), nbytes_(nbytes), device_(device), keepalive_(std::move(keepalive)) {}

Storage::~Storage() {
  if (owned_) std::free(data_);
}

}  // namespace peft
