// kernels/cpu/gemm.h — the one dense matrix product every CPU op goes through.
//
// Row-major with explicit row strides (lda/ldb/ldc), BLAS-like but in row-major terms:
//   C(M,N) = alpha * op(A) * op(B) + beta * C,  op(X) = X^T when trans_x.
// A is stored (M,K) when !trans_a, (K,M) when trans_a; B is (K,N) / (N,K) likewise.
// beta == 0 never reads C (C may hold NaN or be uninitialised), as in BLAS.
#pragma once

#include <cstdint>

namespace peft::kernels::cpu {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda,  // (M,K) or (K,M) when trans_a
          const T* B, int64_t ldb,  // (K,N) or (N,K) when trans_b
          T beta, T* C, int64_t ldc);  // (M,N)

}  // namespace peft::kernels::cpu
