// Device memory: the cudaMalloc-backed raw allocator under each device's CachingAllocator, the
// per-device stream and cuBLAS handle, and the byte copies between host and devices.
//
// Per-device state is created on first use and deliberately never destroyed: tensors held in
// static objects can be freed after this file's statics are gone, and at exit the CUDA runtime
// may already be unloaded; the driver reclaims device memory when the process ends.
#include <cstring>
#include <memory>
#include <mutex>

#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/memory.cuh"
#include "kernels/cuda/runtime.cuh"

namespace peft::cuda {

// ---------------------------------------------------------------------------- device state

namespace {

// Counted once: the set of visible devices cannot change within a process, and allocations
// ask on every call.
int visible_devices() {
  static const int n = device_count();
  return n;
}

// Makes a device current without throwing, for the noexcept raw allocator calls.
struct QuietDeviceSwitch {
  int prev = -1;
  bool ok = false;
  explicit QuietDeviceSwitch(int device) noexcept {
    ok = cudaGetDevice(&prev) == cudaSuccess && (prev == device || cudaSetDevice(device) == cudaSuccess);
    if (!ok) (void)cudaGetLastError();
  }
  ~QuietDeviceSwitch() {
    if (ok) (void)cudaSetDevice(prev);
  }
};

class CudaRawAllocator final : public RawAllocator {
 public:
  explicit CudaRawAllocator(int device) : device_(device) {}

  void* allocate(size_t nbytes) noexcept override {
    QuietDeviceSwitch sw(device_);
    if (!sw.ok) {
      last_error_ = cudaErrorInvalidDevice;
      return nullptr;
    }
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, nbytes);
    if (err != cudaSuccess) {
      // Cleared so the next checked call does not report this failure as its own.
      (void)cudaGetLastError();
      last_error_ = err;
      return nullptr;
    }
    return p;
  }

  // cudaFree waits until the device is idle, so kernels still queued on a cached block finish
  // before the memory goes back to the driver.
  void deallocate(void* ptr) noexcept override {
    QuietDeviceSwitch sw(device_);
    if (cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
  }

  std::string failure_detail() const override {
    std::string s = std::string("cudaMalloc: ") + cudaGetErrorString(last_error_);
    QuietDeviceSwitch sw(device_);
    size_t free_b = 0, total_b = 0;
    if (sw.ok && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      s += "; the device has " + format_bytes(free_b) + " free of " + format_bytes(total_b);
    else
      (void)cudaGetLastError();
    return s;
  }

 private:
  int device_;
  cudaError_t last_error_ = cudaSuccess;  // written and read under the CachingAllocator's mutex
};

struct DeviceState {
  std::once_flag allocator_once, stream_once, cublas_once, lt_once, lt_ws_once;
  CachingAllocator* allocator = nullptr;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* lt_ws = nullptr;
};

DeviceState& state(int device) {
  static DeviceState* const states = new DeviceState[visible_devices() > 0 ? visible_devices() : 1];
  return states[device];
}

// Owns a cudaEvent_t for the duration of one cross-device copy (destroying a recorded event
// that has not completed yet is allowed: the runtime frees it once it completes).
struct Event {
  cudaEvent_t ev = nullptr;
  Event() { PEFT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming)); }
  ~Event() {
    if (ev) (void)cudaEventDestroy(ev);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

}  // namespace

void check_device(Device device) {
  PEFT_CHECK(device.is_cuda(), "expected a CUDA device, got ", device.str());
  const int n = visible_devices();
  PEFT_CHECK(device.index >= 0 && device.index < n, device.str(), " is not available: this machine has ", n,
             " CUDA device", n == 1 ? "" : "s");
}

DeviceGuard::DeviceGuard(int device) {
  int cur = -1;
  PEFT_CUDA_CHECK(cudaGetDevice(&cur));
  if (cur == device) return;
  PEFT_CUDA_CHECK(cudaSetDevice(device));
  prev_ = cur;
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0) (void)cudaSetDevice(prev_);
}

cudaStream_t stream(int device) {
  check_device(Device::cuda(device));
  DeviceState& st = state(device);
  std::call_once(st.stream_once, [&] {
    DeviceGuard g(device);
    cudaStream_t s = nullptr;
    PEFT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    st.stream = s;
  });
  return st.stream;
}

cublasHandle_t cublas(int device) {
  cudaStream_t s = stream(device);  // checks the device
  DeviceState& st = state(device);
  std::call_once(st.cublas_once, [&] {
    DeviceGuard g(device);
    cublasHandle_t h = nullptr;
    PEFT_CUBLAS_CHECK(cublasCreate(&h));
    const cublasStatus_t bound = cublasSetStream(h, s);
    if (bound != CUBLAS_STATUS_SUCCESS) {
      (void)cublasDestroy(h);
      PEFT_CUBLAS_CHECK(bound);
    }
    st.cublas = h;
  });
  return st.cublas;
}

cublasLtHandle_t cublas_lt(int device) {
  check_device(Device::cuda(device));
  DeviceState& st = state(device);
  std::call_once(st.lt_once, [&] {
    DeviceGuard g(device);
    cublasLtHandle_t h = nullptr;
    PEFT_CUBLAS_CHECK(cublasLtCreate(&h));
    st.lt = h;
  });
  return st.lt;
}

void* lt_workspace(int device) {
  CachingAllocator& a = allocator(device);
  DeviceState& st = state(device);
  std::call_once(st.lt_ws_once, [&] { st.lt_ws = a.allocate(kLtWorkspaceBytes); });
  return st.lt_ws;
}

CachingAllocator& allocator(int device) {
  check_device(Device::cuda(device));
  DeviceState& st = state(device);
  std::call_once(st.allocator_once, [&] {
    st.allocator = new CachingAllocator(std::make_unique<CudaRawAllocator>(device), Device::cuda(device));
  });
  return *st.allocator;
}

// ---------------------------------------------------------------------------- core/cuda_api.h

namespace {
CachingAllocator& allocator_for(Device device) {
  check_device(device);  // also refuses the CPU, whose index would name a GPU
  return allocator(device.index);
}
cudaStream_t stream_for(Device device) {
  check_device(device);
  return stream(device.index);
}
}  // namespace

void* device_alloc(Device device, size_t nbytes) { return allocator_for(device).allocate(nbytes); }

void device_free(Device device, void* ptr) { allocator_for(device).deallocate(ptr); }

void empty_cache(Device device) { allocator_for(device).empty_cache(); }

AllocatorStats memory_stats(Device device) { return allocator_for(device).stats(); }

void reset_peak_memory_stats(Device device) { allocator_for(device).reset_peak_stats(); }

void synchronize(Device device) { PEFT_CUDA_CHECK(cudaStreamSynchronize(stream_for(device))); }

void* event_record(Device device) {
  cudaStream_t s = stream_for(device);
  DeviceGuard g(device.index);
  cudaEvent_t ev = nullptr;
  PEFT_CUDA_CHECK(cudaEventCreate(&ev));
  const cudaError_t rec = cudaEventRecord(ev, s);
  if (rec != cudaSuccess) {
    (void)cudaEventDestroy(ev);
    PEFT_CUDA_CHECK(rec);
  }
  return ev;
}

float event_elapsed_ms(void* start, void* end) {
  PEFT_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
  float ms = 0;
  PEFT_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}

void event_destroy(void* event) noexcept {
  if (event && cudaEventDestroy(static_cast<cudaEvent_t>(event)) != cudaSuccess) (void)cudaGetLastError();
}

void device_memset_zero(void* ptr, Device device, size_t nbytes) {
  cudaStream_t s = stream_for(device);
  if (nbytes == 0) return;
  DeviceGuard g(device.index);
  PEFT_CUDA_CHECK(cudaMemsetAsync(ptr, 0, nbytes, s));
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (dst_device.is_cuda()) check_device(dst_device);
  if (src_device.is_cuda()) check_device(src_device);
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
  if (dst_device.is_cpu()) {  // device -> host: wait, so the host reads finished bytes
    cudaStream_t s = stream(src_device.index);
    DeviceGuard g(src_device.index);
    PEFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s));
    PEFT_CUDA_CHECK(cudaStreamSynchronize(s));
    return;
  }
  if (src_device.is_cpu()) {
    // From pageable host memory the call returns once the source has been staged, so the
    // caller may free or overwrite it right away. (Page-locked sources would need a sync.)
    cudaStream_t s = stream(dst_device.index);
    DeviceGuard g(dst_device.index);
    PEFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s));
    return;
  }
  if (dst_device == src_device) {
    cudaStream_t s = stream(dst_device.index);
    DeviceGuard g(dst_device.index);
    PEFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s));
    return;
  }
  // Across devices the copy runs on the source's stream, fenced on both sides: it starts after
  // the destination stream's earlier work (a reused block may still be read there) and the
  // destination stream's later work waits for it. Then stream order holds on both devices.
  cudaStream_t ss = stream(src_device.index), ds = stream(dst_device.index);
  std::unique_ptr<Event> dst_ready, copied;
  {
    DeviceGuard g(dst_device.index);
    dst_ready = std::make_unique<Event>();
    PEFT_CUDA_CHECK(cudaEventRecord(dst_ready->ev, ds));
  }
  {
    DeviceGuard g(src_device.index);
    copied = std::make_unique<Event>();
    PEFT_CUDA_CHECK(cudaStreamWaitEvent(ss, dst_ready->ev, 0));
    PEFT_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes, ss));
    PEFT_CUDA_CHECK(cudaEventRecord(copied->ev, ss));
  }
  DeviceGuard g(dst_device.index);
  PEFT_CUDA_CHECK(cudaStreamWaitEvent(ds, copied->ev, 0));
}

}  // namespace peft::cuda
