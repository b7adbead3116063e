// kernels/cuda/tc_gemm_internal.cuh — what tc_gemm.cu's two kernels share: the launch parameters
// (checked and compacted by tc_gemm()), the element load, the regenerated dropout decision and
// the epilogue's per-element write. Internal to kernels/cuda/tc_gemm*.cu.
#pragma once
#include <cuda_bf16.h>
#ifdef __CUDACC__
#include <mma.h>
#endif

#include <cstdint>

#include "kernels/cuda/tc_gemm.cuh"
#include "kernels/philox.h"

namespace peft::kernels::cuda::tc_detail {

struct Params {
  int64_t M, N;
  TcSegment segs[kTcMaxSegments];  // only segments with K > 0
  int nseg;
  uint64_t seed, offset;
  float p;           // float(p): the Philox uniform is compared in float, as everywhere
  float keep_scale;  // float(1 / (1 - p)) computed in double, as the CPU's dropout_philox
  TcEpilogue ep;
  // Split-K (simple kernel, one unmasked segment): block z sums k in [z·k_split, (z+1)·k_split)
  // and stores its raw sum to partial[z·M·N + m·N + n]; a second kernel adds the splits in order
  // and applies the epilogue. partial == nullptr: no split.
  float* partial;
  int64_t k_split;
};

__device__ __forceinline__ float load_elem(const void* p, bool bf16, int64_t off) {
  if (bf16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[off]);
  return static_cast<const float*>(p)[off];
}

// kernels/cuda/dropout.cu's decision for element e, times its scale.
__device__ __forceinline__ float keep_factor(const Params& P, int64_t e) {
  const float u = philox_word_to_uniform(philox_bits(P.seed, P.offset, static_cast<uint64_t>(e)));
  return u < P.p ? 0.f : P.keep_scale;
}

#ifdef __CUDACC__
// The tensor cores' input type per TcMath: what shared memory holds (elem_t), the WMMA fragment
// type and k, the row padding of a staged slice (16 bytes: fragment pointers stay 32-byte aligned,
// rows start on other banks), the conversion of a staged value, and the rounding of a loaded
// fragment (TF32 only: needed where F32 is staged raw, as by the pipelined kernel's cp.async).
template <TcMath M>
struct TcTraits;
template <>
struct TcTraits<TcMath::BF16> {
  using elem_t = __nv_bfloat16;
  using frag_t = __nv_bfloat16;
  static constexpr int kK = 16;
  static constexpr int kPad = 8;
  __device__ static elem_t convert(float v) { return __float2bfloat16_rn(v); }
  template <class F>
  __device__ static void round_fragment(F&) {}
};
template <>
struct TcTraits<TcMath::TF32> {
  using elem_t = float;
  using frag_t = nvcuda::wmma::precision::tf32;
  static constexpr int kK = 8;
  static constexpr int kPad = 4;
  __device__ static elem_t convert(float v) { return nvcuda::wmma::__float_to_tf32(v); }
  template <class F>
  __device__ static void round_fragment(F& f) {
#pragma unroll
    for (int e = 0; e < f.num_elements; ++e) f.x[e] = nvcuda::wmma::__float_to_tf32(f.x[e]);
  }
};
#endif

#ifdef __CUDACC__  // (the host compiler, which sees this header in the tests, knows no #pragma unroll)
// keep_factor of the four consecutive elements e0 .. e0 + 3. When e0 % 4 == 0 they are one Philox
// block, computed once (a quarter of the work of four keep_factor calls); otherwise each its own.
__device__ __forceinline__ void keep_factor4(const Params& P, int64_t e0, float f[4]) {
  if ((e0 & 3) == 0) {
    const Philox4x32 b = philox_block(P.seed, P.offset, static_cast<uint64_t>(e0));
#pragma unroll
    for (int u = 0; u < 4; ++u) f[u] = philox_word_to_uniform(b.v[u]) < P.p ? 0.f : P.keep_scale;
  } else {
#pragma unroll
    for (int u = 0; u < 4; ++u) f[u] = keep_factor(P, e0 + u);
  }
}
#endif

// out[gm, gn] = alpha · acc (+ bias[gn]) (+ out[gm, gn]), rounded once to the output's dtype.
__device__ __forceinline__ void write_out(const TcEpilogue& ep, int64_t gm, int64_t gn, float acc) {
  float v = ep.alpha * acc;
  if (ep.bias) v += load_elem(ep.bias, ep.bias_bf16, gn);
  const int64_t off = gm * ep.ldc + gn;
  if (ep.out_bf16) {
    __nv_bfloat16* o = static_cast<__nv_bfloat16*>(ep.out);
    if (ep.accumulate) v += __bfloat162float(o[off]);
    o[off] = __float2bfloat16_rn(v);
  } else {
    float* o = static_cast<float*>(ep.out);
    if (ep.accumulate) v += o[off];
    o[off] = v;
  }
}

// The pipelined kernel (tc_gemm_pipelined.cu) takes products larger than 64 in M and N whose
// operands are all stored in the tensor cores' input dtype (BF16, or F32 for TF32), 16-byte
// aligned with leading dimensions a multiple of 16 bytes, unscaled, without dropout on load, every
// a operand k-inner and every b operand of one orientation. Everything else runs on the simple
// kernel.
bool pipelined_eligible(TcMath math, const Params& P);
void launch_pipelined(TcMath math, const Params& P, cudaStream_t stream);

}  // namespace peft::kernels::cuda::tc_detail
