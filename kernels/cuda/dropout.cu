// kernels/cuda/dropout.cu — Philox dropout (kernels/philox.h), forward = backward with the
// mask regenerated.
//
// One thread per Philox block of 4 consecutive elements, so each generator call is computed once
// and all 4 of its words are used, exactly as kernels/cpu/dropout_philox.cpp does; the keep
// decision is an exact float comparison, so the GPU and CPU masks are identical bit for bit.
// The 4 elements per thread are scalar loads (no float4): simple, and alignment-free.
// BF16 (bf16.cuh): same mask; x * scale in float, rounded once, so a BF16 output is the F32
// result rounded to BF16.
#include "kernels/cuda/dropout.cuh"

#include "core/error.h"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/philox.h"

namespace peft::kernels::cuda {

namespace {

using detail::grid_for;
using detail::kThreads;

// ---------------------------------------------------------------------------- kernels

template <class Fn>
__global__ void dropout_kernel(int64_t n, float p, uint64_t seed, uint64_t offset, Fn fn) {
  const int64_t blocks = (n + 3) / 4, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks; b += step) {
    const Philox4x32 r = philox_block(seed, offset, static_cast<uint64_t>(b) * 4);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = b * 4 + k;
      if (i < n) fn(i, !(philox_word_to_uniform(r.v[k]) < p));
    }
  }
}

struct MaskFn {
  uint8_t* mask;
  __device__ void operator()(int64_t i, bool keep) const { mask[i] = keep ? 1 : 0; }
};

template <class T>
struct ScaleFn {
  const T* x;
  T* y;
  acc_t<T> scale;
  __device__ void operator()(int64_t i, bool keep) const {
    y[i] = from_acc<T>(keep ? to_acc(x[i]) * scale : acc_t<T>(0));
  }
};

void check_args(const char* op, int64_t n, double p, const void* a, const void* b) {
  PEFT_CHECK(n >= 0, op, ": negative size ", n);
  PEFT_CHECK(p >= 0 && p <= 1, op, ": probability has to be between 0 and 1, but got ", p);
  PEFT_CHECK(n == 0 || (a != nullptr && b != nullptr), op, ": null device pointer");
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

void dropout_mask(int64_t n, double p, uint64_t seed, uint64_t offset, uint8_t* mask, cudaStream_t stream) {
  check_args("cuda dropout_mask", n, p, mask, mask);
  if (n == 0) return;
  dropout_kernel<<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(n, static_cast<float>(p), seed, offset,
                                                                 MaskFn{mask});
  PEFT_KERNEL_CHECK();
}

template <class T>
void dropout_forward(int64_t n, double p, uint64_t seed, uint64_t offset, const T* x, T* y, cudaStream_t stream) {
  check_args("cuda dropout_forward", n, p, x, y);
  if (n == 0) return;
  const acc_t<T> scale = static_cast<acc_t<T>>(1.0 / (1.0 - p));  // inf when p == 1, never applied: nothing is kept
  dropout_kernel<<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(n, static_cast<float>(p), seed, offset,
                                                                 ScaleFn<T>{x, y, scale});
  PEFT_KERNEL_CHECK();
}

template <class T>
void dropout_backward(int64_t n, double p, uint64_t seed, uint64_t offset, const T* dy, T* dx, cudaStream_t stream) {
  dropout_forward(n, p, seed, offset, dy, dx, stream);  // linear in x: same mask, same scale
}

template void dropout_forward<float>(int64_t, double, uint64_t, uint64_t, const float*, float*, cudaStream_t);
template void dropout_forward<double>(int64_t, double, uint64_t, uint64_t, const double*, double*, cudaStream_t);
template void dropout_backward<float>(int64_t, double, uint64_t, uint64_t, const float*, float*, cudaStream_t);
template void dropout_backward<double>(int64_t, double, uint64_t, uint64_t, const double*, double*, cudaStream_t);
template void dropout_forward<Bf16>(int64_t, double, uint64_t, uint64_t, const Bf16*, Bf16*, cudaStream_t);
template void dropout_backward<Bf16>(int64_t, double, uint64_t, uint64_t, const Bf16*, Bf16*, cudaStream_t);

}  // namespace peft::kernels::cuda
