// Device memory allocators, device-agnostic (no CUDA headers): a RawAllocator is the driver
// call (cudaMalloc/cudaFree, or a fake in tests); CachingAllocator sits on top of one and keeps
// freed blocks by size class so a training loop that repeats the same allocations stops calling
// the driver after its first step (cudaMalloc/cudaFree synchronise the device and cost
// microseconds to milliseconds each).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/device.h"

namespace peft {

// The allocation primitive a CachingAllocator draws from. Never throws: failure is nullptr, so
// the caching layer decides what to do (empty its cache and retry, then report).
class RawAllocator {
 public:
  virtual ~RawAllocator() = default;
  virtual void* allocate(size_t nbytes) noexcept = 0;  // nullptr on failure
  virtual void deallocate(void* ptr) noexcept = 0;
  // Extra words for an out-of-memory message (the driver's error, the device's free memory).
  virtual std::string failure_detail() const { return ""; }
};

// Byte counts are of blocks (request rounded up to its size class), as PyTorch reports them.
struct AllocatorStats {
  size_t allocated_bytes = 0;       // in blocks handed out and not yet returned
  size_t reserved_bytes = 0;        // held from the raw allocator: allocated + cached
  size_t peak_allocated_bytes = 0;  // since construction or reset_peak_stats()
  size_t peak_reserved_bytes = 0;
  uint64_t raw_alloc_count = 0;     // raw allocator calls that succeeded
  uint64_t raw_free_count = 0;
  uint64_t cache_hit_count = 0;     // requests served from a cached block
};

// Thread-safe caching allocator for one device.
//
// Size classes: requests up to 1 MiB round up to a multiple of 512 B (waste < 512 B per block);
// larger ones to one of 4 classes per power of two, i.e. (2^k, 2^(k+1)] rounds up to a multiple
// of 2^(k-2) (waste < 25% of the request, < 20% of the block). A freed block goes on its class's
// free list and is reused only for a request of exactly that class, so there is no splitting or
// coalescing to get wrong, and a loop that repeats its allocations reaches a steady state with
// no raw calls.
//
// Reuse right after deallocate is safe because each device has exactly one stream and every
// kernel and copy on a block is enqueued on it: work issued after the reuse runs after the
// work that used the block before it was freed (stream order). A second stream will need
// per-block stream tracking (events) before this holds again.
class CachingAllocator {
 public:
  // `device` only labels messages.
  CachingAllocator(std::unique_ptr<RawAllocator> raw, Device device);
  // Returns cached blocks to the raw allocator; blocks still handed out are not touched.
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least nbytes (0 gives a valid, unique block). When the raw allocator fails,
  // the cache is emptied and the call retried once; if it fails again, throws peft::Error
  // naming the request and the memory in use. Nothing else changes on failure.
  void* allocate(size_t nbytes);
  // Returns a block to its size class's free list. nullptr is a no-op; a pointer this
  // allocator did not hand out (or already took back) is a peft::Error.
  void deallocate(void* ptr);
  // Gives every cached (free) block back to the raw allocator.
  void empty_cache();
  AllocatorStats stats() const;
  // Peaks restart from the current figures.
  void reset_peak_stats();
  Device device() const { return device_; }

  // The block size a request of nbytes gets (exposed for tests and benchmarks).
  static size_t round_size(size_t nbytes);

 private:
  void empty_cache_locked();

  std::unique_ptr<RawAllocator> raw_;
  Device device_;
  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // class size -> cached blocks
  std::unordered_map<void*, size_t> live_;                // handed-out block -> class size
  AllocatorStats stats_;
};

// "512 B", "1.50 KiB", "3.00 GiB": byte counts in messages.
std::string format_bytes(size_t nbytes);

}  // namespace peft
