// kernels/cuda/gemm.cu — cuBLAS GEMMs (see gemm.cuh for the row-major trick), and the
// core/cuda_ops.h GEMM entry points, which pick the device's handle and the TF32 switch
// (peft::cuda::allow_tf32(), off by default so F32 matches the CPU to F32 rounding).
#include "kernels/cuda/gemm.cuh"

#include <climits>

#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/memory.cuh"

namespace peft::kernels::cuda {

namespace {

struct Types {
  cudaDataType_t data;
  cublasComputeType_t compute;
  bool f64_scalars;  // alpha / beta as double (CUBLAS_COMPUTE_64F) or float
};

Types types_of(GemmType t, bool tf32) {
  switch (t) {
    case GemmType::F32: return {CUDA_R_32F, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, false};
    case GemmType::F64: return {CUDA_R_64F, CUBLAS_COMPUTE_64F, true};
    case GemmType::BF16: return {CUDA_R_16BF, CUBLAS_COMPUTE_32F, false};
    case GemmType::F16: return {CUDA_R_16F, CUBLAS_COMPUTE_32F, false};
  }
  PEFT_ERROR("gemm: unknown GemmType");
}

int as_int(int64_t v, const char* what) {
  PEFT_CHECK(v >= 0 && v <= INT_MAX, "gemm: ", what, " = ", v, " is outside cuBLAS's int range");
  return static_cast<int>(v);
}

cublasOperation_t op_of(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

}  // namespace

void gemm(cublasHandle_t handle, GemmType type, bool tf32, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          double alpha, const void* a, int64_t lda, const void* b, int64_t ldb, double beta, void* c, int64_t ldc) {
  gemm_strided_batched(handle, type, tf32, trans_a, trans_b, M, N, K, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

void gemm_strided_batched(cublasHandle_t handle, GemmType type, bool tf32, bool trans_a, bool trans_b, int64_t M,
                          int64_t N, int64_t K, double alpha, const void* a, int64_t lda, int64_t stride_a,
                          const void* b, int64_t ldb, int64_t stride_b, double beta, void* c, int64_t ldc,
                          int64_t stride_c, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  const Types t = types_of(type, tf32);
  const int m = as_int(N, "N"), n = as_int(M, "M"), k = as_int(K, "K");
  const int ia = as_int(lda, "lda"), ib = as_int(ldb, "ldb"), ic = as_int(ldc, "ldc"), nb = as_int(batch, "batch");
  const float af = static_cast<float>(alpha), bf = static_cast<float>(beta);
  const void* pa = t.f64_scalars ? static_cast<const void*>(&alpha) : static_cast<const void*>(&af);
  const void* pb = t.f64_scalars ? static_cast<const void*>(&beta) : static_cast<const void*>(&bf);
  // Column-major Cᵀ (N, M) = op(B)ᵀ · op(A)ᵀ: B first.
  if (batch == 1) {
    PEFT_CUBLAS_CHECK(cublasGemmEx(handle, op_of(trans_b), op_of(trans_a), m, n, k, pa, b, t.data, ib, a, t.data, ia,
                                   pb, c, t.data, ic, t.compute, CUBLAS_GEMM_DEFAULT));
  } else {
    PEFT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, op_of(trans_b), op_of(trans_a), m, n, k, pa, b, t.data, ib,
                                                 stride_b, a, t.data, ia, stride_a, pb, c, t.data, ic, stride_c, nb,
                                                 t.compute, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace peft::kernels::cuda

namespace peft::cuda_ops {

namespace {
kernels::cuda::GemmType gemm_type(DType dt) {
  switch (dt) {
    case DType::F32: return kernels::cuda::GemmType::F32;
    case DType::F64: return kernels::cuda::GemmType::F64;
    case DType::BF16: return kernels::cuda::GemmType::BF16;
    case DType::F16: return kernels::cuda::GemmType::F16;
    default: PEFT_ERROR("matmul: unsupported dtype ", dtype_name(dt), " on CUDA");
  }
}
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const void* a, int64_t lda,
          const void* b, int64_t ldb, double beta, void* c, int64_t ldc, DType dtype, Device dev) {
  const kernels::cuda::GemmType t = gemm_type(dtype);
  cuda::check_device(dev);
  cuda::DeviceGuard g(dev.index);
  kernels::cuda::gemm(cuda::cublas(dev.index), t, cuda::allow_tf32(), trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb,
                      beta, c, ldc);
}

void gemm_batched(int64_t batch, int64_t M, int64_t N, int64_t K, const void* a, const void* b, void* c, DType dtype,
                  Device dev) {
  const kernels::cuda::GemmType t = gemm_type(dtype);
  cuda::check_device(dev);
  cuda::DeviceGuard g(dev.index);
  const int64_t lda = K > 0 ? K : 1, ldb = N > 0 ? N : 1, ldc = N > 0 ? N : 1;
  kernels::cuda::gemm_strided_batched(cuda::cublas(dev.index), t, cuda::allow_tf32(), false, false, M, N, K, 1.0, a,
                                      lda, M * K, b, ldb, K * N, 0.0, c, ldc, M * N, batch);
}

}  // namespace peft::cuda_ops
