// A block of bytes owned by one or more tensors. CPU storage is 64-byte aligned (Eigen's
// vector loads); CUDA storage comes from the device's caching allocator (core/cuda_api.h) and
// goes back to it; external storage (an mmap) keeps its owner alive through `keepalive`.
#pragma once
#include <cstddef>
#include <memory>

#include "core/device.h"

namespace peft {

class Storage {
 public:
  // Allocates nbytes on the device, uninitialised (throws when the device is absent or full).
  Storage(size_t nbytes, Device device);
  // Wraps memory owned elsewhere (read/write is the caller's promise).
  Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keepalive);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::shared_ptr<void> keepalive_;
  bool owned_ = false;
};

}  // namespace peft
