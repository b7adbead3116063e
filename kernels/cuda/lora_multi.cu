// kernels/cuda/lora_multi.cu — BGMV shrink and expand.
//
// Shrink: one block per row (grid-stride), each warp owns rank components k = warp, warp +
// nwarps, ...: its lanes stride over `in` (coalesced reads of x[n] and of row k of A_a) and a
// shuffle tree sums them. Decode batches are small and `in` large, so a row's work is r dot
// products of length `in`: one block keeps x[n] in L1 for all of them.
// Expand: a 2-D grid, x over output features, y over rows: thread o reads u[n, 0..r) (a
// broadcast) and row o of B_a (r contiguous values; the warp's rows are adjacent, so B_a streams
// through L1 once), adds s·acc rounded to Y to y[n, o] as PEFT does (`result += lora.to(dtype)`).
#include "kernels/cuda/lora_multi.cuh"

#include <cuda_bf16.h>

#include <type_traits>

#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace peft::kernels::cuda {

namespace {

using detail::kMaxBlocks;

template <class T>
using acc_of = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class A, class T>
__device__ __forceinline__ A load_as(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return static_cast<A>(__bfloat162float(v));
  else return static_cast<A>(v);
}

template <class Y, class A>
__device__ __forceinline__ Y store_as(A v) {
  if constexpr (std::is_same_v<Y, __nv_bfloat16>) return __float2bfloat16_rn(static_cast<float>(v));
  else return static_cast<Y>(v);
}

constexpr int kShrinkThreads = 128;  // 4 warps per row
constexpr int kExpandThreads = 256;

template <class T>
__global__ void shrink_kernel(int64_t N, int64_t in, int64_t r_max, const T* __restrict__ x,
                              const int64_t* __restrict__ rows, const LoraMultiEntry* __restrict__ table,
                              acc_of<T>* __restrict__ u) {
  using Acc = acc_of<T>;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int64_t a = rows[n];
    if (a < 0) continue;
    const LoraMultiEntry e = table[a];
    const T* A = static_cast<const T*>(e.A);
    const T* xr = x + n * in;
    for (int64_t k = warp; k < e.r; k += nwarps) {
      const T* Ak = A + k * in;
      Acc acc = 0;
      for (int64_t i = lane; i < in; i += 32) acc += load_as<Acc>(xr[i]) * load_as<Acc>(Ak[i]);
      acc = detail::warp_reduce(acc, detail::SumOp{});
      if (lane == 0) u[n * r_max + k] = acc;
    }
  }
}

template <class T, class Y>
__global__ void expand_kernel(int64_t N, int64_t out, int64_t r_max, const acc_of<T>* __restrict__ u,
                              const int64_t* __restrict__ rows, const LoraMultiEntry* __restrict__ table,
                              const Y* y, Y* out_y) {
  using Acc = acc_of<T>;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= out) return;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const int64_t a = rows[n];
    const Y yv = y[n * out + o];
    if (a < 0) {
      out_y[n * out + o] = yv;
      continue;
    }
    const LoraMultiEntry e = table[a];
    const T* Bo = static_cast<const T*>(e.B) + o * e.r;
    const Acc* un = u + n * r_max;
    Acc acc = 0;
    for (int64_t k = 0; k < e.r; ++k) acc += un[k] * load_as<Acc>(Bo[k]);
    const Y delta = store_as<Y>(static_cast<Acc>(e.scale) * acc);
    // Y's add: in float for BF16 / F32 (what PyTorch does for a BF16 +=), in double for F64.
    using YAcc = acc_of<Y>;
    out_y[n * out + o] = store_as<Y>(load_as<YAcc>(yv) + load_as<YAcc>(delta));
  }
}

}  // namespace

template <class T, class Y>
void lora_multi_add(int64_t N, int64_t in, int64_t out, int64_t r_max, const T* x, const Y* y, Y* out_y,
                    const int64_t* rows, const LoraMultiEntry* table, void* u, cudaStream_t stream) {
  PEFT_CHECK(N >= 0 && in >= 0 && out >= 0 && r_max >= 0, "cuda lora_multi: negative size");
  if (N == 0 || out == 0) return;
  PEFT_CHECK(y != nullptr && out_y != nullptr && rows != nullptr && table != nullptr,
             "cuda lora_multi: null device pointer");
  auto* ua = static_cast<acc_of<T>*>(u);
  if (r_max > 0) {
    PEFT_CHECK(x != nullptr && u != nullptr, "cuda lora_multi: null device pointer");
    const unsigned blocks = static_cast<unsigned>(N < kMaxBlocks ? N : kMaxBlocks);
    shrink_kernel<T><<<blocks, kShrinkThreads, 0, stream>>>(N, in, r_max, x, rows, table, ua);
    PEFT_KERNEL_CHECK();
  }
  const int64_t tiles = (out + kExpandThreads - 1) / kExpandThreads;
  PEFT_CHECK(tiles <= 0x7fffffff, "cuda lora_multi: ", out, " output features is too many for one launch");
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(N < 65535 ? N : 65535));
  expand_kernel<T, Y><<<grid, kExpandThreads, 0, stream>>>(N, out, r_max, ua, rows, table, y, out_y);
  PEFT_KERNEL_CHECK();
}

#define PEFT_LORA_MULTI_INSTANTIATE(T, Y)                                                                          \
  template void lora_multi_add<T, Y>(int64_t, int64_t, int64_t, int64_t, const T*, const Y*, Y*, const int64_t*, \
                                     const LoraMultiEntry*, void*, cudaStream_t);
PEFT_LORA_MULTI_INSTANTIATE(float, float)
PEFT_LORA_MULTI_INSTANTIATE(double, double)
PEFT_LORA_MULTI_INSTANTIATE(float, double)
PEFT_LORA_MULTI_INSTANTIATE(float, __nv_bfloat16)
PEFT_LORA_MULTI_INSTANTIATE(__nv_bfloat16, __nv_bfloat16)
#undef PEFT_LORA_MULTI_INSTANTIATE

}  // namespace peft::kernels::cuda
