// kernels/cuda/tc_gemm.cu — the segmented tensor-core GEMM of tc_gemm.cuh.
//
// Block = 64×64 output tile, 4 warps in a 2×2 grid, each warp a 32×32 sub-tile held as 2×2 WMMA
// accumulator fragments (F32). The K loop stages a 64×32 slice of each operand in shared memory
// in one canonical layout (sA[m][k] read as row-major matrix_a, sB[n][k] read as col-major
// matrix_b), whatever the operand's orientation in global memory, converting to BF16 / TF32 on
// the way (scale and dropout applied first, in F32). The epilogue goes through shared memory
// (the fragments' element layout is unspecified, so a per-element mask, bias or dtype conversion
// needs each element's coordinates): the accumulator tile is stored there, then written with
// coalesced, bounds-checked stores. The operand staging buffers and the output tile share one
// shared array; the __syncthreads() between phases keep them apart.
//
// Deliberately simple (first version, written without a GPU to run it): scalar loads, no
// cp.async double buffering (the aligned big products go to tc_gemm_pipelined.cu instead).
// Long-K / small-output products (backward's dA, dB) split K when given a workspace. Operands
// with dropout are staged four consecutive storage elements a thread (one Philox block for the
// four); in the transposed orientation those stores hit shared memory 4 rows apart (bank
// conflicts) — a tuning point. The GPU session tunes it against bench_gpu_suite --case lora_linear.
#include "kernels/cuda/tc_gemm.cuh"

#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>

#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/tc_gemm_internal.cuh"

namespace peft::kernels::cuda {

namespace {

namespace wmma = nvcuda::wmma;
using tc_detail::keep_factor4;
using tc_detail::load_elem;
using tc_detail::Params;

constexpr int kBM = 64, kBN = 64, kBK = 32, kTcThreads = 128;
static_assert(kBM == kBN, "stage() stages both operands as kBM x kBK slices");
// Split-K tuning (see tc_gemm): ~2 blocks per SM of an H100 (132 SMs), slices of >= 256 k.
constexpr int64_t kSplitTargetBlocks = 264, kMinSplitK = 256;
constexpr int kMaxSplits = 64;
constexpr int kLdC = kBN + 4;  // float row stride of the staged output tile (a multiple of 4, as WMMA needs)


// A kBM (== kBN) × kBK slice of an operand, rows i0.., k0.., into s[i][k] (row stride ld_s).
// Consecutive threads read consecutive addresses in either orientation.
template <class Tr>
__device__ void stage(typename Tr::elem_t* s, const TcOperand& op, int64_t i0, int64_t k0, int64_t rows, int64_t K,
                      const Params& P) {
  constexpr int ld_s = kBK + Tr::kPad;
  if (op.dropout) {
    // Four consecutive elements of a storage row per thread — (i, k..k+3) k-inner, (i..i+3, k)
    // otherwise — so their offsets are consecutive and share one Philox block when aligned.
    for (int q = threadIdx.x; q < kBM * kBK / 4; q += kTcThreads) {
      const int i = op.k_inner ? q / (kBK / 4) : (q % (kBM / 4)) * 4;
      const int k = op.k_inner ? (q % (kBK / 4)) * 4 : q / (kBM / 4);
      const int64_t gi = i0 + i, gk = k0 + k;
      const int64_t off0 = op.k_inner ? gi * op.ld + gk : gk * op.ld + gi;
      float f[4];
      keep_factor4(P, off0, f);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int iu = op.k_inner ? i : i + u, ku = op.k_inner ? k + u : k;
        float v = 0.f;
        // A dropped element is 0 even when x holds Inf / NaN, as in kernels/cuda/dropout.cu.
        if (i0 + iu < rows && k0 + ku < K && f[u] != 0.f) v = load_elem(op.ptr, op.bf16, off0 + u) * f[u] * op.scale;
        s[iu * ld_s + ku] = Tr::convert(v);
      }
    }
    return;
  }
  for (int idx = threadIdx.x; idx < kBM * kBK; idx += kTcThreads) {
    const int i = op.k_inner ? idx / kBK : idx % kBM;
    const int k = op.k_inner ? idx % kBK : idx / kBM;
    const int64_t gi = i0 + i, gk = k0 + k;
    float v = 0.f;
    if (gi < rows && gk < K) {
      const int64_t off = op.k_inner ? gi * op.ld + gk : gk * op.ld + gi;
      v = load_elem(op.ptr, op.bf16, off) * op.scale;
    }
    s[i * ld_s + k] = Tr::convert(v);
  }
}

template <TcMath Math>
__global__ void __launch_bounds__(kTcThreads) tc_gemm_kernel(const Params P) {
  using Tr = tc_detail::TcTraits<Math>;
  using smem_t = typename Tr::elem_t;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, Tr::kK, float>;
  constexpr int ld_s = kBK + Tr::kPad;
  constexpr size_t kStageBytes = 2 * kBM * ld_s * sizeof(smem_t);
  constexpr size_t kTileBytes = kBM * kLdC * sizeof(float);
  __shared__ __align__(128) unsigned char smem[kStageBytes > kTileBytes ? kStageBytes : kTileBytes];
  smem_t* sA = reinterpret_cast<smem_t*>(smem);
  smem_t* sB = sA + kBM * ld_s;
  float* sC = reinterpret_cast<float*>(smem);

  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kBM, n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  const int warp = threadIdx.x / 32, wm = warp / 2, wn = warp % 2;
  Acc acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  auto tile_ptr = [&](int i, int j) { return sC + (wm * 32 + i * 16) * kLdC + wn * 32 + j * 16; };
  auto store_tile = [&] {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::store_matrix_sync(tile_ptr(i, j), acc[i][j], kLdC, wmma::mem_row_major);
  };

  for (int s = 0; s < P.nseg; ++s) {
    const TcSegment& seg = P.segs[s];
    // This block's k range: all of K, or split z's slice of it.
    const int64_t k_begin = P.partial ? static_cast<int64_t>(blockIdx.z) * P.k_split : 0;
    const int64_t k_end = P.partial && k_begin + P.k_split < seg.K ? k_begin + P.k_split : seg.K;
    for (int64_t k0 = k_begin; k0 < k_end; k0 += kBK) {
      stage<Tr>(sA, seg.a, m0, k0, P.M, seg.K, P);
      stage<Tr>(sB, seg.b, n0, k0, P.N, seg.K, P);
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kBK; kk += Tr::kK) {
        wmma::fragment<wmma::matrix_a, 16, 16, Tr::kK, typename Tr::frag_t, wmma::row_major> fa[2];
        wmma::fragment<wmma::matrix_b, 16, 16, Tr::kK, typename Tr::frag_t, wmma::col_major> fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], sA + (wm * 32 + i * 16) * ld_s + kk, ld_s);
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], sB + (wn * 32 + j * 16) * ld_s + kk, ld_s);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
      __syncthreads();  // the next slice overwrites what the warps just read
    }
    if (s == 0 && seg.mask_result) {
      // Segment 0's sum times the mask of its output element, before anything else is added.
      store_tile();
      __syncthreads();
      for (int q = threadIdx.x; q < kBM * kBN / 4; q += kTcThreads) {  // 4 consecutive columns a thread
        const int i = q / (kBN / 4), j = (q % (kBN / 4)) * 4;
        const int64_t gm = m0 + i, gn = n0 + j;
        if (gm >= P.M) continue;
        float f[4];
        keep_factor4(P, gm * P.ep.ldc + gn, f);
#pragma unroll
        for (int u = 0; u < 4; ++u)
          if (gn + u < P.N) sC[i * kLdC + j + u] = f[u] != 0.f ? sC[i * kLdC + j + u] * f[u] : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(acc[i][j], tile_ptr(i, j), kLdC, wmma::mem_row_major);
      __syncthreads();  // sC aliases the staging buffers of the next segment
    }
  }

  store_tile();
  __syncthreads();
  for (int idx = threadIdx.x; idx < kBM * kBN; idx += kTcThreads) {
    const int i = idx / kBN, j = idx % kBN;
    const int64_t gm = m0 + i, gn = n0 + j;
    if (gm >= P.M || gn >= P.N) continue;
    if (P.partial) P.partial[(static_cast<int64_t>(blockIdx.z) * P.M + gm) * P.N + gn] = sC[i * kLdC + j];
    else tc_detail::write_out(P.ep, gm, gn, sC[i * kLdC + j]);
  }
}

// Split-K's second step: the splits' partial sums added in split order (deterministic), then the
// epilogue, one thread per output element.
__global__ void split_k_reduce_kernel(const Params P, int splits) {
  const int64_t total = P.M * P.N, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    float v = 0.f;
    for (int z = 0; z < splits; ++z) v += P.partial[z * total + e];
    tc_detail::write_out(P.ep, e / P.N, e % P.N, v);
  }
}

void check_operand(const TcOperand& op, int64_t rows, int64_t K, int s, const char* which) {
  PEFT_CHECK(op.ptr != nullptr, "tc_gemm: segment ", s, " operand ", which, " is a null pointer");
  const int64_t inner = op.k_inner ? K : rows;
  PEFT_CHECK(op.ld >= inner && op.ld >= 1, "tc_gemm: segment ", s, " operand ", which, " has leading dimension ", op.ld,
             ", needs at least ", inner);
}

}  // namespace

void tc_gemm(TcMath math, int64_t M, int64_t N, const TcSegment* segs, int nseg, const TcDropout& drop,
             const TcEpilogue& ep, cudaStream_t stream, void* workspace, size_t workspace_bytes) {
  PEFT_CHECK(M >= 0 && N >= 0, "tc_gemm: negative size ", M, " x ", N);
  PEFT_CHECK(nseg >= 0 && nseg <= kTcMaxSegments, "tc_gemm: ", nseg, " segments, at most ", kTcMaxSegments);
  PEFT_CHECK(drop.p >= 0 && drop.p < 1, "tc_gemm: dropout probability must be in [0, 1), got ", drop.p);
  PEFT_CHECK(nseg == 0 || segs != nullptr, "tc_gemm: null segment list");
  if (M == 0 || N == 0) return;
  PEFT_CHECK(ep.out != nullptr, "tc_gemm: null output");
  PEFT_CHECK(ep.ldc >= N, "tc_gemm: output leading dimension ", ep.ldc, " < ", N, " columns");
  Params P{};
  P.M = M;
  P.N = N;
  P.nseg = 0;
  for (int s = 0; s < nseg; ++s) {
    PEFT_CHECK(segs[s].K >= 0, "tc_gemm: segment ", s, " has negative K ", segs[s].K);
    PEFT_CHECK(!segs[s].mask_result || s == 0, "tc_gemm: only segment 0 may mask its result");
    if (segs[s].K == 0) continue;  // contributes nothing (a masked zero is zero)
    check_operand(segs[s].a, M, segs[s].K, s, "a");
    check_operand(segs[s].b, N, segs[s].K, s, "b");
    P.segs[P.nseg++] = segs[s];
  }
  P.seed = drop.seed;
  P.offset = drop.offset;
  P.p = static_cast<float>(drop.p);
  P.keep_scale = static_cast<float>(1.0 / (1.0 - drop.p));
  P.ep = ep;
  const int64_t mt = (M + kBM - 1) / kBM, nt = (N + kBN - 1) / kBN;
  PEFT_CHECK(mt <= 0x7fffffff && nt <= 65535, "tc_gemm: ", M, " x ", N, " is beyond the launch grid (at most ",
             65535 * kBN, " columns)");
  if (tc_detail::pipelined_eligible(math, P)) return tc_detail::launch_pipelined(math, P, stream);
  // Split-K for long, narrow products (LoRA's dA = dUᵀ·x and dB = dYᵀ·us: K = the batch, an output
  // of r × in): too few tiles to fill the GPU, each walking all of K. Splits until about
  // kSplitTargetBlocks blocks run, each slice at least kMinSplitK long, within the workspace.
  int splits = 1;
  if (workspace && P.nseg == 1 && !P.segs[0].mask_result) {
    const int64_t tiles = mt * nt, K = P.segs[0].K;
    const int64_t by_blocks = (kSplitTargetBlocks + tiles - 1) / tiles, by_k = K / kMinSplitK;
    const int64_t by_space = static_cast<int64_t>(workspace_bytes / (static_cast<size_t>(M * N) * sizeof(float)));
    const int64_t want = std::min({by_blocks, by_k, by_space, static_cast<int64_t>(kMaxSplits)});
    if (want >= 2) {
      P.k_split = ((K + want - 1) / want + kBK - 1) / kBK * kBK;  // a whole number of K slices
      splits = static_cast<int>((K + P.k_split - 1) / P.k_split);
      P.partial = static_cast<float*>(workspace);
    }
  }
  const dim3 grid(static_cast<unsigned>(mt), static_cast<unsigned>(nt), static_cast<unsigned>(splits));
  if (math == TcMath::BF16) tc_gemm_kernel<TcMath::BF16><<<grid, kTcThreads, 0, stream>>>(P);
  else tc_gemm_kernel<TcMath::TF32><<<grid, kTcThreads, 0, stream>>>(P);
  PEFT_KERNEL_CHECK();
  if (splits > 1) {
    const int64_t blocks = std::min<int64_t>((M * N + 255) / 256, 4096);
    split_k_reduce_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(P, splits);
  }
  PEFT_KERNEL_CHECK();
}

}  // namespace peft::kernels::cuda
