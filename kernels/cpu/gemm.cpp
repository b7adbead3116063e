// kernels/cpu/gemm.cpp — gemm() on OpenBLAS for large products (when built with it), else Eigen.
//
// Every operand is an Eigen::Map of a row-major matrix with an OuterStride (the row
// stride), so strided views (a group's slice of a weight, a column block of an
// activation) multiply without copies. Products are written with .noalias() so Eigen
// evaluates straight into C; Eigen's own GEMM picks blocking and (under OpenMP) threads,
// and falls back to one thread when called inside one of our parallel regions.
#include "kernels/cpu/gemm.h"

#include "kernels/cpu/eigen.h"
#include <algorithm>

#ifdef PEFT_WITH_OPENBLAS
#include <cblas.h>

#include <mutex>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace peft::kernels::cpu {

namespace {

template <class T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMajor<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MutMap = Eigen::Map<RowMajor<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// C = alpha*opA*opB (+ existing C when accumulate); opA/opB are Eigen expressions.
template <class T, class XA, class XB>
void product_into(MutMap<T>& c, T alpha, const XA& a, const XB& b, bool accumulate) {
  if (accumulate) {
    c.noalias() += alpha * a * b;
  } else {
    c.noalias() = alpha * a * b;
  }
}

#ifdef PEFT_WITH_OPENBLAS
// Below this many multiply-adds Eigen's GEMM is as fast (OpenBLAS's fixed per-call cost --
// buffer setup, its thread pool -- dominates; the LoRA rank-r products live here).
constexpr double kBlasMinWork = 64.0 * 64.0 * 64.0;

inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha,
              A, static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}
inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, double alpha,
                      const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
                      int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha,
              A, static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

// OpenBLAS's own thread pool (Debian's default build uses pthreads) and our OpenMP team would
// both want every core: between GEMMs the OpenMP workers spin, and OpenBLAS's threads then share
// the cores with them (2 threads ran PoolFormer 1.7x slower than 1). So OpenBLAS runs one thread
// per call and the parallelism is ours: the OpenMP team splits C into row or column blocks, each
// thread one single-threaded BLAS call (OpenBLAS is safe to call concurrently).
void blas_single_threaded_once() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

template <class T>
void blas_gemm_parallel(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                        int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  blas_single_threaded_once();
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  int threads = 1;
#ifdef _OPENMP
  if (!omp_in_parallel()) threads = omp_get_max_threads();
#endif
  // Each block keeps >= 64 rows/columns so a thread's panel still fills OpenBLAS's kernel.
  const bool by_rows = M >= N;
  const int64_t extent = by_rows ? M : N;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(threads, extent / 64));
  if (blocks == 1) {
    blas_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int64_t step = (extent + blocks - 1) / blocks;
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(blocks))
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * step, len = std::min(extent, lo + step) - lo;
    if (len <= 0) continue;
    if (by_rows) {  // rows lo..lo+len of C = rows of op(A)
      const T* a = trans_a ? A + lo : A + lo * lda;
      blas_gemm(ta, tb, len, N, K, alpha, a, lda, B, ldb, beta, C + lo * ldc, ldc);
    } else {        // columns lo..lo+len of C = columns of op(B)
      const T* bp = trans_b ? B + lo * ldb : B + lo;
      blas_gemm(ta, tb, M, len, K, alpha, A, lda, bp, ldb, beta, C + lo, ldc);
    }
  }
}

// BLAS wants every leading dimension >= the stored row length (>= 1) and 32-bit sizes; a
// single stored row's stride is never used, so it is raised to the row length. Anything else
// (e.g. a broadcast operand with row stride 0) stays on Eigen, which takes any stride.
inline bool blas_fits(int64_t rows, int64_t cols, int64_t& ld) {
  if (rows == 1) ld = std::max<int64_t>(ld, std::max<int64_t>(cols, 1));
  return ld >= std::max<int64_t>(cols, 1) && rows < INT32_MAX && cols < INT32_MAX && ld < INT32_MAX;
}
#endif

}  // namespace

// ----------------------------------------------------------------------------------------

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  MutMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (K <= 0 || alpha == T(0)) {  // no product term; A and B are not read
    if (beta == T(0)) {
      c.setZero();
    } else if (beta != T(1)) {
      c *= beta;
    }
    return;
  }
#ifdef PEFT_WITH_OPENBLAS
  if (static_cast<double>(M) * N * K >= kBlasMinWork) {
    int64_t la = lda, lb = ldb, lc = ldc;
    if (blas_fits(trans_a ? K : M, trans_a ? M : K, la) && blas_fits(trans_b ? N : K, trans_b ? K : N, lb) &&
        blas_fits(M, N, lc)) {
      // beta == 0: BLAS does not read C, as this function promises.
      blas_gemm_parallel(trans_a, trans_b, M, N, K, alpha, A, la, B, lb, beta, C, lc);
      return;
    }
  }
#endif
  bool accumulate = beta != T(0);
  if (accumulate && beta != T(1)) c *= beta;

  // Stored shapes: A is (M,K) or (K,M); B is (K,N) or (N,K).
  ConstMap<T> a(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
  ConstMap<T> b(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
  if (!trans_a && !trans_b) {
    product_into<T>(c, alpha, a, b, accumulate);
  } else if (!trans_a && trans_b) {
    product_into<T>(c, alpha, a, b.transpose(), accumulate);
  } else if (trans_a && !trans_b) {
    product_into<T>(c, alpha, a.transpose(), b, accumulate);
  } else {
    product_into<T>(c, alpha, a.transpose(), b.transpose(), accumulate);
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                           int64_t, const double*, int64_t, double, double*, int64_t);

}  // namespace peft::kernels::cpu
