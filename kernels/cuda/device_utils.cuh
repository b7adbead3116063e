// Device-side helpers shared by the kernel files (nvcc only; not part of any public header):
// float/double overloads of the math functions, so a kernel templated on T calls the right
// precision without relying on which std:: overloads the toolkit exposes in device code; warp /
// block reductions; grid sizing for grid-stride loops.
//
// Reductions are fixed trees (shuffles, then one warp over the per-warp partials), so a result
// depends only on the data and the launch shape, never on scheduling: no atomics here.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace peft::kernels::cuda::detail {

// ---------------------------------------------------------------------------- math overloads

__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return exp(x); }
__device__ __forceinline__ float dlog(float x) { return logf(x); }
__device__ __forceinline__ double dlog(double x) { return log(x); }
__device__ __forceinline__ float dsqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double dsqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float dabs(float x) { return fabsf(x); }
__device__ __forceinline__ double dabs(double x) { return fabs(x); }
__device__ __forceinline__ float dtanh(float x) { return tanhf(x); }
__device__ __forceinline__ double dtanh(double x) { return tanh(x); }
__device__ __forceinline__ float derf(float x) { return erff(x); }
__device__ __forceinline__ double derf(double x) { return erf(x); }
__device__ __forceinline__ float dpow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double dpow(double a, double b) { return pow(a, b); }

// -inf without std::numeric_limits (constexpr host code is not callable from device code
// without --expt-relaxed-constexpr).
template <class T>
__device__ __forceinline__ T neg_inf();
template <>
__device__ __forceinline__ float neg_inf<float>() { return -__int_as_float(0x7f800000); }
template <>
__device__ __forceinline__ double neg_inf<double>() { return -__longlong_as_double(0x7ff0000000000000LL); }

// Records that the index at `position` was out of range: keeps the smallest such position, so
// the report does not depend on thread scheduling. *first_bad starts at INT64_MAX
// (kernels/cuda/index_check.cuh).
__device__ __forceinline__ void record_bad_index(int64_t* first_bad, int64_t position) {
  if (first_bad != nullptr) atomicMin(reinterpret_cast<long long*>(first_bad), static_cast<long long>(position));
}

// ---------------------------------------------------------------------------- reductions

struct SumOp {
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const { return a + b; }
};
struct MaxOp {
  // Same NaN behaviour as std::max(a, b) on the CPU: b only when a < b.
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const { return a < b ? b : a; }
};

template <class A, class Op>
__device__ __forceinline__ A warp_reduce(A v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Reduces v over the block and returns the result to every thread. blockDim.x must be a
// multiple of 32 (every launcher here uses 32..1024); smem holds 32 A's. Safe to call again
// right after (the trailing barrier protects smem).
template <class A, class Op>
__device__ A block_reduce(A v, A* smem, Op op, A identity) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nwarps ? smem[lane] : identity;
    v = warp_reduce(v, op);
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  v = smem[0];
  __syncthreads();
  return v;
}

// ---------------------------------------------------------------------------- launch shapes

constexpr int kThreads = 256;
// Grid-stride loops cover any n; more blocks than this only adds scheduling overhead.
constexpr int64_t kMaxBlocks = 1 << 16;

inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > kMaxBlocks) b = kMaxBlocks;
  return static_cast<unsigned>(b);
}

// Smallest power of two >= n, clamped to [32, cap]: block size for one-block-per-row kernels,
// so short rows do not idle 256 threads.
inline int block_for_row(int64_t n, int cap = kThreads) {
  int t = 32;
  while (t < cap && t < n) t <<= 1;
  return t;
}

}  // namespace peft::kernels::cuda::detail
