#include "core/allocator.h"

#include <cstdio>

#include "core/error.h"
#include "core/profiler.h"

namespace peft {

namespace {
constexpr size_t kSmallGranularity = 512;
constexpr size_t kSmallLimit = size_t(1) << 20;  // 1 MiB: above it, power-of-two classes
// Beyond this no device can serve the request; the size is left as is so the rounding
// arithmetic cannot overflow, and the raw allocator reports the failure.
constexpr size_t kUnclassedAbove = size_t(1) << 62;
}  // namespace

size_t CachingAllocator::round_size(size_t nbytes) {
  if (nbytes <= kSmallLimit) {
    if (nbytes == 0) return kSmallGranularity;
    return (nbytes + kSmallGranularity - 1) / kSmallGranularity * kSmallGranularity;
  }
  if (nbytes > kUnclassedAbove) return nbytes;
  // nbytes in (2^k, 2^(k+1)]: round up to a multiple of 2^(k-2), i.e. 1.25, 1.5, 1.75 or 2 · 2^k.
  int k = 20;
  while ((size_t(2) << k) < nbytes) ++k;
  const size_t step = size_t(1) << (k - 2);
  return (nbytes - 1) / step * step + step;
}

CachingAllocator::CachingAllocator(std::unique_ptr<RawAllocator> raw, Device device)
    : raw_(std::move(raw)), device_(device) {
  PEFT_CHECK(raw_ != nullptr, "CachingAllocator: no raw allocator for ", device.str());
}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mutex_);
  empty_cache_locked();
}

void* CachingAllocator::allocate(size_t nbytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t size = round_size(nbytes);
  void* p = nullptr;
  auto it = free_.find(size);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    live_.emplace(p, size);  // before pop_back: if it throws, the block stays cached
    it->second.pop_back();
    ++stats_.cache_hit_count;
  } else {
    p = raw_->allocate(size);
    if (p == nullptr && stats_.reserved_bytes > stats_.allocated_bytes) {
      // Cached blocks of other classes may be what the device lacks.
      empty_cache_locked();
      p = raw_->allocate(size);
    }
    if (p == nullptr) {
      const std::string detail = raw_->failure_detail();
      const char* op = profiler::current_op();  // the innermost op running on this thread, if any
      PEFT_ERROR(device_.str(), " out of memory", op ? std::string(" in ") + op : std::string(),
                 ": tried to allocate ", format_bytes(nbytes), "; ",
                 format_bytes(stats_.allocated_bytes), " allocated by tensors, ", format_bytes(stats_.reserved_bytes),
                 " reserved", detail.empty() ? "" : " (" + detail + ")");
    }
    try {
      live_.emplace(p, size);
    } catch (...) {
      raw_->deallocate(p);
      throw;
    }
    ++stats_.raw_alloc_count;
    stats_.reserved_bytes += size;
    if (stats_.reserved_bytes > stats_.peak_reserved_bytes) stats_.peak_reserved_bytes = stats_.reserved_bytes;
  }
  stats_.allocated_bytes += size;
  if (stats_.allocated_bytes > stats_.peak_allocated_bytes) stats_.peak_allocated_bytes = stats_.allocated_bytes;
  return p;
}

void CachingAllocator::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  PEFT_CHECK(it != live_.end(), device_.str(), " allocator: deallocate of pointer ", ptr,
             " that it did not allocate (or already freed)");
  const size_t size = it->second;
  free_[size].push_back(ptr);  // may throw bad_alloc: then the block simply stays live
  live_.erase(it);
  stats_.allocated_bytes -= size;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  empty_cache_locked();
}

void CachingAllocator::empty_cache_locked() {
  for (auto& [size, blocks] : free_) {
    for (void* p : blocks) {
      raw_->deallocate(p);
      ++stats_.raw_free_count;
      stats_.reserved_bytes -= size;
    }
  }
  free_.clear();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

std::string format_bytes(size_t nbytes) {
  if (nbytes < 1024) return std::to_string(nbytes) + " B";
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(nbytes) / 1024;
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

}  // namespace peft
