// kernels/cuda/tc_gemm_pipelined.cu — tc_gemm's fast kernel, for products whose operands need no
// conversion on the way in (tc_gemm_internal.cuh: pipelined_eligible). That is the LoRA forward's
// x·Wᵀ + us·Bᵀ and dX's mask ⊙ (dU·A) + dY·W, the two products that carry the layer's FLOPs.
//
// Block = 128×128 output tile, 8 warps in a 2×4 grid, each warp 64×32 = 4×2 WMMA accumulators.
// Operand slices go global → shared with 16-byte cp.async (zero-filling rows and columns past the
// edge through the instruction's source size), two stages: slice t+1 is in flight while the tensor
// cores work on slice t. a is k-inner (staged sA[m][k], row-major matrix_a); b is staged sB[n][k]
// (col-major matrix_b) when k-inner, sB[k][n] (row-major matrix_b) otherwise. TF32 operands arrive
// as raw F32 and are rounded in the fragment (wmma::__float_to_tf32), since no conversion happens
// on the way in.
//
// Per-element work (segment 0's dropout mask, the epilogue) goes fragment by fragment through a
// 16×16 F32 scratch per warp that aliases the pipeline buffers (the pipeline is drained first):
// each lane knows the coordinates of what it rescales or writes.
//
// Written without a GPU to run it on; test_cuda_lora_fused covers it with shapes whose leading
// dimensions are a multiple of 16 bytes (the other shapes exercise the simple kernel).
#include <cuda_bf16.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/tc_gemm_internal.cuh"

namespace peft::kernels::cuda::tc_detail {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kBM = 128, kBN = 128, kThreads = 256;
constexpr int kLdS = 20;  // float row stride of a warp's 16×16 scratch (a multiple of 4, as WMMA needs)

// Per stage: k slice kBK (two WMMA k steps), copied in 16-byte chunks of kChunk elements.
template <TcMath M>
struct Stage;
template <>
struct Stage<TcMath::BF16> {
  static constexpr int kBK = 32, kChunk = 8;
};
template <>
struct Stage<TcMath::TF32> {
  static constexpr int kBK = 16, kChunk = 4;
};

__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  // src_bytes < 16 zero-fills the rest of the 16 bytes (0: all zeros, nothing read).
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Copies a rows × (cols_chunks · kChunk) slice, element (i, j) at src[(i0 + i)·ld + j0 + j], into
// dst[i·ld_dst + j]; rows ≥ rows_total and columns ≥ cols_total arrive as zeros.
template <TcMath Math>
__device__ __forceinline__ void copy_slice(typename TcTraits<Math>::elem_t* dst, int ld_dst, int rows,
                                           int col_chunks, const void* src_v, int64_t ld, int64_t i0, int64_t j0,
                                           int64_t rows_total, int64_t cols_total) {
  using T = typename TcTraits<Math>::elem_t;
  constexpr int kChunk = Stage<Math>::kChunk;
  const T* src = static_cast<const T*>(src_v);
  for (int c = threadIdx.x; c < rows * col_chunks; c += kThreads) {
    const int i = c / col_chunks, j = (c % col_chunks) * kChunk;
    const int64_t gi = i0 + i, gj = j0 + j;
    int64_t valid = gi < rows_total ? cols_total - gj : 0;
    valid = valid < 0 ? 0 : (valid > kChunk ? kChunk : valid);
    const T* from = valid > 0 ? src + gi * ld + gj : src;  // nothing is read when valid == 0
    cp_async16(dst + i * ld_dst + j, from, static_cast<int>(valid * sizeof(T)));
  }
}

template <TcMath Math, bool BKInner>
__global__ void __launch_bounds__(kThreads) pipelined_kernel(const Params P) {
  using Tr = TcTraits<Math>;
  using T = typename Tr::elem_t;
  constexpr int kBK = Stage<Math>::kBK, kChunk = Stage<Math>::kChunk;
  constexpr int ldA = kBK + Tr::kPad;                          // sA[m][k]
  constexpr int ldB = BKInner ? kBK + Tr::kPad : kBN + Tr::kPad;  // sB[n][k] or sB[k][n]
  constexpr int kAElems = kBM * ldA, kBElems = BKInner ? kBN * ldB : kBK * ldB;
  constexpr int kStageElems = kAElems + kBElems;
  constexpr size_t kPipeBytes = 2 * kStageElems * sizeof(T);
  constexpr size_t kScratchBytes = (kThreads / 32) * 16 * kLdS * sizeof(float);
  static_assert(kScratchBytes <= kPipeBytes, "the scratch lives in the drained pipeline buffers");
  static_assert((kAElems * sizeof(T)) % 32 == 0 && (kStageElems * sizeof(T)) % 32 == 0, "fragment alignment");
  __shared__ __align__(128) unsigned char smem[kPipeBytes];
  T* const stage_base = reinterpret_cast<T*>(smem);

  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kBM, n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / 4, wn = warp % 4;  // warp tile rows wm·64.., columns wn·32..
  float* const scratch = reinterpret_cast<float*>(smem) + warp * 16 * kLdS;

  using Acc = wmma::fragment<wmma::accumulator, 16, 16, Tr::kK, float>;
  Acc acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  // Runs fn(row, col, values) over the warp's fragment (i, j) through the scratch, four
  // consecutive columns at a time (row / col: the output's global coordinates of the first), then
  // loads the fragment back when `reload`. The caller has made the scratch free (__syncthreads).
  auto through_scratch = [&](int i, int j, auto fn, bool reload) {
    wmma::store_matrix_sync(scratch, acc[i][j], kLdS, wmma::mem_row_major);
    __syncwarp();
    for (int g = lane; g < 64; g += 32) {  // 16 rows × 4 groups of 4 columns
      const int r = g / 4, c = (g % 4) * 4;
      fn(m0 + wm * 64 + i * 16 + r, n0 + wn * 32 + j * 16 + c, scratch + r * kLdS + c);
    }
    __syncwarp();
    if (reload) wmma::load_matrix_sync(acc[i][j], scratch, kLdS, wmma::mem_row_major);
    __syncwarp();
  };

  for (int s = 0; s < P.nseg; ++s) {
    const TcSegment& seg = P.segs[s];
    const int64_t K = seg.K;
    const int64_t tiles = (K + kBK - 1) / kBK;
    auto load_stage = [&](int buf, int64_t k0) {
      T* sA = stage_base + buf * kStageElems;
      T* sB = sA + kAElems;
      copy_slice<Math>(sA, ldA, kBM, kBK / kChunk, seg.a.ptr, seg.a.ld, m0, k0, P.M, K);
      if (BKInner) copy_slice<Math>(sB, ldB, kBN, kBK / kChunk, seg.b.ptr, seg.b.ld, n0, k0, P.N, K);
      else copy_slice<Math>(sB, ldB, kBK, kBN / kChunk, seg.b.ptr, seg.b.ld, k0, n0, K, P.N);
    };
    load_stage(0, 0);
    cp_async_commit();
    for (int64_t t = 0; t < tiles; ++t) {
      if (t + 1 < tiles) load_stage(static_cast<int>((t + 1) & 1), (t + 1) * kBK);
      cp_async_commit();  // possibly empty: keeps "all but the newest group" = slice t
      cp_async_wait<1>();
      __syncthreads();
      const T* sA = stage_base + (t & 1) * kStageElems;
      const T* sB = sA + kAElems;
#pragma unroll
      for (int kk = 0; kk < kBK; kk += Tr::kK) {
        wmma::fragment<wmma::matrix_a, 16, 16, Tr::kK, typename Tr::frag_t, wmma::row_major> fa[4];
        using BLayout = typename std::conditional<BKInner, wmma::col_major, wmma::row_major>::type;
        wmma::fragment<wmma::matrix_b, 16, 16, Tr::kK, typename Tr::frag_t, BLayout> fb[2];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          wmma::load_matrix_sync(fa[i], sA + (wm * 64 + i * 16) * ldA + kk, ldA);
          Tr::round_fragment(fa[i]);
        }
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const T* pb = BKInner ? sB + (wn * 32 + j * 16) * ldB + kk : sB + kk * ldB + wn * 32 + j * 16;
          wmma::load_matrix_sync(fb[j], pb, ldB);
          Tr::round_fragment(fb[j]);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
      __syncthreads();  // slice t's buffer is refilled at iteration t + 1
    }
    cp_async_wait<0>();
    __syncthreads();  // pipeline drained: the scratch (or the next segment's slices) may use the buffers
    if (s == 0 && seg.mask_result) {
      auto mask = [&](int64_t gm, int64_t gn, float* v) {
        if (gm >= P.M) return;
        float f[4];
        keep_factor4(P, gm * P.ep.ldc + gn, f);  // one Philox block when the offset is a multiple of 4
#pragma unroll
        for (int u = 0; u < 4; ++u)
          if (gn + u < P.N) v[u] = f[u] != 0.f ? v[u] * f[u] : 0.f;  // dropped: 0, as dropout.cu
      };
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) through_scratch(i, j, mask, true);
      __syncthreads();  // the next segment's slices overwrite the scratch
    }
  }

  auto store = [&](int64_t gm, int64_t gn, const float* v) {
    if (gm >= P.M) return;
#pragma unroll
    for (int u = 0; u < 4; ++u)
      if (gn + u < P.N) write_out(P.ep, gm, gn + u, v[u]);
  };
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) through_scratch(i, j, store, false);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool pipelined_eligible(TcMath math, const Params& P) {
  // A product no larger than the simple kernel's 64×64 tile in M or N (us and dU: N = r) would
  // waste most of a 128×128 tile and halve the blocks; the simple kernel keeps those.
  if (P.nseg == 0 || P.M <= 64 || P.N <= 64) return false;
  const bool bf16 = math == TcMath::BF16;
  const int64_t chunk = bf16 ? 8 : 4;
  const bool b_k_inner = P.segs[0].b.k_inner;
  for (int s = 0; s < P.nseg; ++s) {
    const TcSegment& seg = P.segs[s];
    if (!seg.a.k_inner || seg.b.k_inner != b_k_inner) return false;
    for (const TcOperand* op : {&seg.a, &seg.b})
      if (op->bf16 != bf16 || op->scale != 1.f || op->dropout || !aligned16(op->ptr) || op->ld % chunk != 0)
        return false;
  }
  return true;
}

void launch_pipelined(TcMath math, const Params& P, cudaStream_t stream) {
  const int64_t mt = (P.M + kBM - 1) / kBM, nt = (P.N + kBN - 1) / kBN;
  PEFT_CHECK(mt <= 0x7fffffff && nt <= 65535, "tc_gemm: ", P.M, " x ", P.N, " is beyond the launch grid");
  const dim3 grid(static_cast<unsigned>(mt), static_cast<unsigned>(nt));
  const bool bk = P.segs[0].b.k_inner;
  if (math == TcMath::BF16) {
    if (bk) pipelined_kernel<TcMath::BF16, true><<<grid, kThreads, 0, stream>>>(P);
    else pipelined_kernel<TcMath::BF16, false><<<grid, kThreads, 0, stream>>>(P);
  } else {
    if (bk) pipelined_kernel<TcMath::TF32, true><<<grid, kThreads, 0, stream>>>(P);
    else pipelined_kernel<TcMath::TF32, false><<<grid, kThreads, 0, stream>>>(P);
  }
  PEFT_KERNEL_CHECK();
}

}  // namespace peft::kernels::cuda::tc_detail
