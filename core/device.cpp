#include "core/device.h"

#include "core/error.h"
#ifdef PEFT_WITH_CUDA
#include "kernels/cuda/runtime.cuh"
#endif

namespace peft {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s == "meta") return meta();
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5) {
    int idx = 0;
    for (size_t i = 5; i < s.size(); ++i) {
      PEFT_CHECK(s[i] >= '0' && s[i] <= '9' && idx < 100000, "Device: cannot parse '", s, "'");
      idx = idx * 10 + (s[i] - '0');
    }
    return cuda(idx);
  }
  PEFT_ERROR("Device: cannot parse '", s, "' (expected cpu, cuda, cuda:N or meta)");
}

int cuda_device_count() {
#ifdef PEFT_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

bool built_with_cuda() {
#ifdef PEFT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string Device::str() const {
  if (is_meta()) return "meta";
  return is_cpu() ? "cpu" : "cuda:" + std::to_string(index);
}

namespace {
thread_local bool meta_by_default = false;
}  // namespace

Device default_device() { return meta_by_default ? Device::meta() : Device::cpu(); }

MetaDeviceGuard::MetaDeviceGuard() : previous_(meta_by_default) { meta_by_default = true; }
MetaDeviceGuard::~MetaDeviceGuard() { meta_by_default = previous_; }

}  // namespace peft
