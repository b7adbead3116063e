// kernels/cuda/gemm.cuh — row-major GEMMs through cuBLAS (column-major), the GPU twin of
// kernels/cpu/gemm.h: C (M, N) = alpha · op(A) · op(B) + beta · C.
//
// Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ, and a row-major matrix read column-major is its
// own transpose, so the launchers pass (B, A) with their transposes as given and N, M swapped:
// no copies. A transposed operand is stored as (K, M) (resp. (N, K)) with its leading dimension.
// F32 uses CUBLAS_COMPUTE_32F, or CUBLAS_COMPUTE_32F_FAST_TF32 when `tf32` is set; F64 uses
// CUBLAS_COMPUTE_64F; BF16 / F16 inputs and outputs accumulate in F32. The handle must be bound
// to the caller's stream; nothing synchronises.
#pragma once
#include <cublas_v2.h>

#include <cstdint>

namespace peft::kernels::cuda {

enum class GemmType { F32, F64, BF16, F16 };

void gemm(cublasHandle_t handle, GemmType type, bool tf32, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          double alpha,
          const void* a, int64_t lda,  // (M, K), or (K, M) when trans_a
          const void* b, int64_t ldb,  // (K, N), or (N, K) when trans_b
          double beta,
          void* c, int64_t ldc);       // (M, N)

// The same with an F32 C from BF16 / F16 operands (F32 accumulation): mixed-precision gradients.
void gemm_out_f32(cublasHandle_t handle, GemmType ab, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  double alpha, const void* a, int64_t lda, const void* b, int64_t ldb, double beta, float* c,
                  int64_t ldc);

// `batch` products, operand i at base + i * stride (elements).
void gemm_strided_batched(cublasHandle_t handle, GemmType type, bool tf32, bool trans_a, bool trans_b, int64_t M,
                          int64_t N, int64_t K, double alpha, const void* a, int64_t lda, int64_t stride_a,
                          const void* b, int64_t ldb, int64_t stride_b, double beta, void* c, int64_t ldc,
                          int64_t stride_c, int64_t batch);

}  // namespace peft::kernels::cuda
