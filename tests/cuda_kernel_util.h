// Helpers for tests/test_cuda_kernels.cpp: random host data that is never zero, strided layouts,
// an RAII device buffer that starts poisoned (all bytes 0xFF: NaN in F32 / F64, -1 in I64), and
// the GPU-vs-CPU comparison |gpu - cpu| <= atol + rtol * |cpu|.
//
// Outputs are compared over their whole storage with the CPU's copy poisoned the same way, so an
// element the view addresses but the GPU never wrote (NaN vs a number) and an element outside the
// view that the GPU wrote (a number vs NaN) both fail; NaN == NaN counts as equal only there.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <peft/peft.h>

#include "kernels/cpu/elementwise.h"

#ifdef PEFT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace peft::testing {

using Dims = std::vector<int64_t>;

// ---------------------------------------------------------------------------- skipping

// True when the CUDA cases can run; otherwise prints the skip (and the case passes).
inline bool cuda_ready() {
  if (!peft::built_with_cuda()) {
    WARN("skipped: no CUDA device (built without CUDA: PEFT_CUDA=OFF or no nvcc)");
    return false;
  }
  if (peft::cuda_device_count() == 0) {
    WARN("skipped: no CUDA device");
    return false;
  }
  return true;
}

// Restores the process-wide TF32 switch and LoRA path whatever a failing REQUIRE leaves behind.
struct CudaSwitchGuard {
  bool tf32 = peft::cuda::allow_tf32();
  peft::cuda::LoraCudaPath path = peft::cuda::lora_path();
  ~CudaSwitchGuard() {
    peft::cuda::set_allow_tf32(tf32);
    peft::cuda::set_lora_path(path);
  }
};

// ---------------------------------------------------------------------------- host data

// Magnitudes in [lo, hi] (lo > 0, so never zero), random sign unless positive.
template <class T>
std::vector<T> random_vec(size_t n, uint64_t seed, bool positive = false, double lo = 0.1, double hi = 1.5) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> mag(lo, hi);
  std::bernoulli_distribution neg(0.5);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>((!positive && neg(gen)) ? -mag(gen) : mag(gen));
  return v;
}

template <class T>
std::vector<T> poisoned(size_t n) {
  std::vector<T> v(n);
  if (n > 0) std::memset(v.data(), 0xFF, n * sizeof(T));
  return v;
}

// ---------------------------------------------------------------------------- layouts

inline Dims row_major(const Dims& shape) {
  Dims s(shape.size());
  int64_t st = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    s[d] = st;
    st *= shape[d];
  }
  return s;
}
inline Dims col_major(const Dims& shape) {
  Dims s(shape.size());
  int64_t st = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    s[d] = st;
    st *= shape[d];
  }
  return s;
}
// Row-major with every dim's stride scaled by `step` (gaps between elements: a sliced view).
inline Dims sliced(const Dims& shape, int64_t step) {
  Dims s = row_major(shape);
  for (auto& e : s) e *= step;
  return s;
}
// Stride 0 (broadcast) on the listed dims.
inline Dims bcast(Dims strides, std::initializer_list<int> dims) {
  for (int d : dims) strides[static_cast<size_t>(d)] = 0;
  return strides;
}
// Elements of storage a view needs: 1 + sum (shape - 1) * stride.
inline size_t storage(const Dims& shape, const Dims& strides) {
  int64_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return 0;
    n += (shape[d] - 1) * strides[d];
  }
  return static_cast<size_t>(n);
}
inline int64_t numel(const Dims& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}
inline std::string dims_str(const Dims& d) { return peft::shape_str(d); }

// ---------------------------------------------------------------------------- comparison

struct Tol {
  double atol, rtol;
};
// Elementwise math: CUDA's float / double math functions are within 1-2 ulp of glibc's.
template <class T>
Tol tol_of() {
  return sizeof(T) == 4 ? Tol{1e-5, 1e-4} : Tol{1e-12, 1e-10};
}

template <class T>
void check_close(const std::vector<T>& gpu, const std::vector<T>& cpu, Tol tol, const std::string& what) {
  REQUIRE(gpu.size() == cpu.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double g = static_cast<double>(gpu[i]), c = static_cast<double>(cpu[i]);
    const bool ok = (std::isnan(g) && std::isnan(c)) || std::fabs(g - c) <= tol.atol + tol.rtol * std::fabs(c);
    if (!ok && bad++ == 0) first = i;
  }
  if (bad > 0) {
    INFO(what << ": " << bad << " of " << cpu.size() << " elements differ (atol " << tol.atol << ", rtol " << tol.rtol
              << "); first at " << first << ": gpu " << static_cast<double>(gpu[first]) << ", cpu "
              << static_cast<double>(cpu[first]));
    CHECK(bad == 0);
  } else {
    SUCCEED(what);
  }
}

// Bit-for-bit equality (conversions, gathers, dropout masks).
template <class T>
void check_bits(const std::vector<T>& gpu, const std::vector<T>& cpu, const std::string& what) {
  REQUIRE(gpu.size() == cpu.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < cpu.size(); ++i)
    if (std::memcmp(&gpu[i], &cpu[i], sizeof(T)) != 0 && bad++ == 0) first = i;
  INFO(what << ": " << bad << " of " << cpu.size() << " elements differ in their bits; first at " << first);
  CHECK(bad == 0);
}

#ifdef PEFT_WITH_CUDA
// ---------------------------------------------------------------------------- device memory

inline void cuda_require(cudaError_t e, const char* what) {
  INFO(what << ": " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e) << ")");
  REQUIRE(e == cudaSuccess);
}

// Owns n elements of device memory, poisoned on creation. Copies use the legacy default stream,
// which the kernel-level tests also launch on (stream 0), so a download waits for the kernels
// before it; the explicit synchronize reports a kernel fault here, at the download that would
// read its output. Tests that launch through core/cuda_ops.h run on peft's own non-blocking
// stream instead: they must cudaDeviceSynchronize() after filling buffers and before launching
// (the poison memset and a pageable upload may still be in flight), as downloads already do.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    cuda_require(cudaMalloc(reinterpret_cast<void**>(&p_), (n_ > 0 ? n_ : 1) * sizeof(T)), "cudaMalloc");
    poison();
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { (void)cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  void poison() { cuda_require(cudaMemset(p_, 0xFF, (n_ > 0 ? n_ : 1) * sizeof(T)), "cudaMemset (poison)"); }
  void upload(const std::vector<T>& host) {
    REQUIRE(host.size() == n_);
    if (n_ > 0) cuda_require(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  std::vector<T> download() const {
    cuda_require(cudaDeviceSynchronize(), "kernel execution (cudaDeviceSynchronize)");
    std::vector<T> host(n_);
    if (n_ > 0) cuda_require(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return host;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};
#endif

}  // namespace peft::testing
