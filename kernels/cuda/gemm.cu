// kernels/cuda/gemm.cu — cuBLAS GEMMs (see gemm.cuh for the row-major trick), and the
// core/cuda_ops.h GEMM entry points, which pick the device's handle and the TF32 switch
// (peft::cuda::allow_tf32(), off by default so F32 matches the CPU to F32 rounding).
#include "kernels/cuda/gemm.cuh"

#include <climits>

#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/gemm_lt.cuh"
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

void gemm_out_f32(cublasHandle_t handle, GemmType ab, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  double alpha, const void* a, int64_t lda, const void* b, int64_t ldb, double beta, float* c,
                  int64_t ldc) {
  if (M == 0 || N == 0) return;
  PEFT_CHECK(ab == GemmType::BF16 || ab == GemmType::F16, "gemm_out_f32: operands must be BF16 or F16");
  const Types t = types_of(ab, false);
  const float af = static_cast<float>(alpha), bf = static_cast<float>(beta);
  PEFT_CUBLAS_CHECK(cublasGemmEx(handle, op_of(trans_b), op_of(trans_a), as_int(N, "N"), as_int(M, "M"),
                                 as_int(K, "K"), &af, b, t.data, as_int(ldb, "ldb"), a, t.data, as_int(lda, "lda"), &bf,
                                 c, CUDA_R_32F, as_int(ldc, "ldc"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
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

void gemm_fused(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const void* a, int64_t lda,
                const void* b, int64_t ldb, double beta, const void* c_in, int64_t ldc_in, void* d, int64_t ldd,
                const void* bias, DType dtype, DType out_dtype, Device dev) {
  const kernels::cuda::GemmType t = gemm_type(dtype);
  const bool d_f32 = out_dtype != dtype;
  PEFT_CHECK(!d_f32 || (out_dtype == DType::F32 && (dtype == DType::BF16 || dtype == DType::F16)),
             "gemm_fused: output dtype ", dtype_name(out_dtype), " with ", dtype_name(dtype), " operands (only F32 from "
             "BF16 / F16)");
  cuda::check_device(dev);
  cuda::DeviceGuard g(dev.index);
  if (M == 0 || N == 0) return;
  kernels::cuda::LtGemm lt;
  lt.ab = t;
  lt.tf32 = cuda::allow_tf32();
  lt.d_f32 = d_f32;
  lt.trans_a = trans_a;
  lt.trans_b = trans_b;
  lt.M = M;
  lt.N = N;
  lt.K = K;
  lt.alpha = static_cast<float>(alpha);
  lt.beta = static_cast<float>(beta);
  lt.a = a;
  lt.lda = lda;
  lt.b = b;
  lt.ldb = ldb;
  lt.c = beta != 0 ? c_in : nullptr;
  lt.ldc = ldc_in;
  lt.d = d;
  lt.ldd = ldd;
  lt.bias = bias;
  if (K > 0 && dtype != DType::F64) {
    // Without the workspace (the device nearly full) cuBLASLt still has algorithms that need none.
    void* ws = nullptr;
    size_t ws_bytes = 0;
    try {
      ws = cuda::lt_workspace(dev.index);
      ws_bytes = cuda::kLtWorkspaceBytes;
    } catch (const Error&) {
    }
    if (kernels::cuda::gemm_lt(cuda::cublas_lt(dev.index), lt, ws, ws_bytes, cuda::stream(dev.index))) return;
  }
  // Fallback: d = c_in (a strided 2-D copy) or, with no c_in, the bias broadcast into d (then
  // accumulated on, so every dtype's copy kernel serves); d = alpha·a·b + beta'·d; with both
  // c_in and a bias, d += bias last.
  const size_t esz = dtype_size(out_dtype);
  if (beta != 0 && c_in != d)
    PEFT_CUDA_CHECK(cudaMemcpy2DAsync(d, static_cast<size_t>(ldd) * esz, c_in, static_cast<size_t>(ldc_in) * esz,
                                      static_cast<size_t>(N) * esz, static_cast<size_t>(M), cudaMemcpyDeviceToDevice,
                                      cuda::stream(dev.index)));
  if (bias && beta == 0) {
    copy_convert({M, N}, d, out_dtype, {ldd, 1}, bias, out_dtype, {0, 1}, dev);
    beta = 1;
    bias = nullptr;
  }
  if (!d_f32) {
    kernels::cuda::gemm(cuda::cublas(dev.index), t, cuda::allow_tf32(), trans_a, trans_b, M, N, K, alpha, a, lda, b,
                        ldb, beta, d, ldd);
  } else {
    kernels::cuda::gemm_out_f32(cuda::cublas(dev.index), t, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta,
                                static_cast<float*>(d), ldd);
  }
  if (bias) binary(BinaryOp::Add, {M, N}, d, {ldd, 1}, d, {ldd, 1}, bias, {0, 1}, out_dtype, dev);
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
