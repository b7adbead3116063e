// kernels/cuda/tc_gemm.cuh — a tensor-core GEMM (WMMA, BF16 or TF32 inputs, F32 accumulation)
// built for the fused LoRA kernels (kernels/cuda/lora_fused.cu): several K segments summed into
// one accumulator, loads that scale and apply a Philox dropout mask on the fly, and an epilogue
// that adds a bias and writes the result once.
//
//   out[m, n] = alpha · Σ_seg Σ_k a_seg(m, k) · b_seg(n, k)  (+ bias[n]) (+ out[m, n] when accumulate)
//
// Why segments: the LoRA forward is x·Wᵀ + (s·u)·Bᵀ — the same output tile with two inner
// dimensions (in, then r), so the expand rides in the base product's accumulator and y is
// written once. dX = dY·W + mask ⊙ (dU·A) is two segments too; there the first segment's sum is
// multiplied by the dropout mask of its output element before the second is added (`mask_result`,
// allowed on segment 0 only).
//
// Operands are read where they are, in either orientation and either element type (F32 or BF16),
// and converted while staged into shared memory: BF16 tensor cores round F32 operands to BF16,
// TF32 ones round everything to TF32. Dropout on an operand multiplies element e (its offset in
// the operand's storage: i·ld + k or k·ld + i) by keep(e) / (1 − p), keep(e) being exactly
// kernels/cuda/dropout.cuh's Philox decision for element e of stream (seed, offset) — so the mask
// is regenerated, never stored, and equals the CPU's kernels/cpu/dropout_philox mask.
//
// Any M, N, K (tails zero-filled on load, guarded on store), any alignment. Two kernels behind one
// entry point: products whose operands need no conversion, scale or mask on load, are 16-byte
// aligned and larger than 64 in M and N take the pipelined one (128×128 tiles, two-stage cp.async,
// tc_gemm_pipelined.cu); the rest the simple one (64×64×32 tiles, scalar loads, single-buffered,
// tc_gemm.cu). Both untuned. Device pointers; queues on `stream` without syncing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace peft::kernels::cuda {

enum class TcMath { BF16, TF32 };  // tensor-core input precision; accumulation is always F32

struct TcOperand {
  const void* ptr = nullptr;
  bool bf16 = false;     // element type: BF16 when true, F32 otherwise
  int64_t ld = 0;        // leading dimension in elements
  bool k_inner = true;   // element (i, k) at ptr[i·ld + k]; otherwise at ptr[k·ld + i]
  float scale = 1.f;     // multiplies every element as it is loaded
  bool dropout = false;  // applies the TcDropout mask to every element as it is loaded
};

// a(m, k) with m < M, b(n, k) with n < N, k < K. K = 0 contributes nothing.
struct TcSegment {
  TcOperand a, b;
  int64_t K = 0;
  bool mask_result = false;  // segment 0 only: its sum times keep(m·ldc + n) / (1 − p) — the mask of
                             // the OUTPUT element's offset (ldc from the epilogue)
};

struct TcDropout {
  double p = 0;  // 0 <= p < 1
  uint64_t seed = 0, offset = 0;
};

struct TcEpilogue {
  void* out = nullptr;
  bool out_bf16 = false;  // BF16 output (rounded once, to nearest even), F32 otherwise
  int64_t ldc = 0;
  float alpha = 1.f;
  const void* bias = nullptr;  // (N) or null
  bool bias_bf16 = false;
  bool accumulate = false;     // add to what `out` holds instead of overwriting it
};

constexpr int kTcMaxSegments = 2;

// Checks its arguments (peft::Error naming the problem) and launches one kernel — or two: given a
// device workspace, a long and narrow single-segment product without a result mask (few output
// tiles, large K) is split along K into F32 partial sums there (at most workspace_bytes), then
// added in a fixed order (deterministic). The workspace must stay allocated until the launches
// are done (stream order).
void tc_gemm(TcMath math, int64_t M, int64_t N, const TcSegment* segs, int nseg, const TcDropout& drop,
             const TcEpilogue& ep, cudaStream_t stream, void* workspace = nullptr, size_t workspace_bytes = 0);

}  // namespace peft::kernels::cuda
