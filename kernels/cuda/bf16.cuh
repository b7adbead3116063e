// kernels/cuda/bf16.cuh — BF16 as a storage type for the CUDA kernels: Bf16 (the 16 bits, no
// arithmetic), acc_t<T> (the type a kernel computes in: float for Bf16, T otherwise) and the
// conversions between the two, so each kernel is written once as template <class T> with
// `using C = acc_t<T>`, loading with to_acc and storing with from_acc<T>.
//
// Why a bare struct rather than __nv_bfloat16: it has no operators and no implicit conversions,
// so a kernel that forgets a conversion does not compile instead of silently computing in
// 8 mantissa bits; and its conversions are the bit-exact ones of core/dtype.cpp (round to
// nearest even, NaN -> 0x7fc0), so GPU and CPU round a value the same way. Host code (the
// launcher declarations, the tests) sees only the struct and the trait; the conversions are
// nvcc-only.
#pragma once
#include <cstdint>

namespace peft::kernels::cuda {

struct alignas(2) Bf16 {
  uint16_t bits;
};
static_assert(sizeof(Bf16) == 2, "Bf16 must be the 2 bytes of a BF16 tensor element");

template <class T>
struct AccOf {
  using type = T;
};
template <>
struct AccOf<Bf16> {
  using type = float;
};
// The compute type of storage type T.
template <class T>
using acc_t = typename AccOf<T>::type;

#ifdef __CUDACC__
// Bit-exact ports of core/dtype.cpp's bf16_to_float / float_to_bf16.
__device__ __forceinline__ float bf16_to_float_dev(uint16_t v) {
  return __uint_as_float(static_cast<uint32_t>(v) << 16);
}

__device__ __forceinline__ uint16_t float_to_bf16_dev(float f) {
  if (f != f) return 0x7fc0;
  uint32_t bits = __float_as_uint(f);
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}

// Storage -> compute.
__device__ __forceinline__ float to_acc(Bf16 v) { return bf16_to_float_dev(v.bits); }
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }

namespace detail {
template <class T>
struct FromAcc {
  __device__ __forceinline__ static T from(T v) { return v; }
};
template <>
struct FromAcc<Bf16> {
  __device__ __forceinline__ static Bf16 from(float v) { return Bf16{float_to_bf16_dev(v)}; }
};
}  // namespace detail

// Compute -> storage: from_acc<T>(v) converts v to acc_t<T> first (so a double statistic stored
// into BF16 rounds double -> float -> BF16, as the CPU's copy_convert does), then rounds.
template <class T, class X>
__device__ __forceinline__ T from_acc(X v) {
  return detail::FromAcc<T>::from(static_cast<acc_t<T>>(v));
}
#endif

}  // namespace peft::kernels::cuda
