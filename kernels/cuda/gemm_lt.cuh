// kernels/cuda/gemm_lt.cuh — row-major GEMMs through cuBLASLt, for what cublasGemmEx cannot do in
// one pass: D (M, N) = alpha · op(A) · op(B) + beta · C (+ bias[n] per column) with
//   - the bias added in the epilogue (a Linear layer's y = x·Wᵀ + b: one write of y instead of a
//     broadcast copy of b into y, then a read-modify-write of y by the GEMM),
//   - C and D distinct (a LoRA merge W' = W + s·B·A reads W and writes W' in the same kernel),
//   - D in F32 from BF16 / F16 operands (mixed-precision adapter gradients).
// Same row-major convention as gemm.cuh (column-major Dᵀ = op(B)ᵀ·op(A)ᵀ, so B goes first); the
// bias, of length N, is per row of the column-major Dᵀ: CUBLASLT_EPILOGUE_BIAS broadcasts it.
//
// Algorithms come from cuBLASLt's heuristic, asked once per shape: descriptors and the chosen
// algorithm are cached per (types, transposes, sizes, leading dims, epilogue, pointer alignments),
// as PyTorch does, so a training step costs no heuristic calls after the first. The pointer
// alignments are part of the key because the heuristic may pick kernels that need 16-byte (or
// larger) aligned operands; views at odd offsets get their own entry.
//
// Cost: the same FLOPs as the product; bytes = operands + D (+ C when beta != 0): the epilogue
// bias costs N elements, not another M·N pass.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/gemm.cuh"

namespace peft::kernels::cuda {

struct LtGemm {
  GemmType ab = GemmType::F32;  // A and B (and C / D unless d_f32)
  bool tf32 = false;            // F32 on TF32 tensor cores
  bool d_f32 = false;           // C / D (and bias) in F32 while A, B are BF16 / F16
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  float alpha = 1.f, beta = 0.f;
  const void* a = nullptr;  // (M, K), or (K, M) when trans_a
  int64_t lda = 0;
  const void* b = nullptr;  // (K, N), or (N, K) when trans_b
  int64_t ldb = 0;
  const void* c = nullptr;  // (M, N), read when beta != 0; may equal d
  int64_t ldc = 0;
  void* d = nullptr;        // (M, N)
  int64_t ldd = 0;
  const void* bias = nullptr;  // (N) in D's dtype, or null
};

// Runs g on `stream` with `workspace` (ws_bytes). Returns false, having queued nothing, when
// cuBLASLt has no algorithm for it (the caller falls back to cublasGemmEx); throws on any other
// failure. Thread-safe (the cache is locked).
bool gemm_lt(cublasLtHandle_t handle, const LtGemm& g, void* workspace, size_t ws_bytes, cudaStream_t stream);

}  // namespace peft::kernels::cuda
