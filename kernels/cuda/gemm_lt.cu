// kernels/cuda/gemm_lt.cu — cuBLASLt GEMMs with the bias in the epilogue (see gemm_lt.cuh).
#include "kernels/cuda/gemm_lt.cuh"

#include <array>
#include <climits>
#include <map>
#include <mutex>

#include "kernels/cuda/check.cuh"

namespace peft::kernels::cuda {

namespace {

// ---------------------------------------------------------------------------- plan cache

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr, ld = nullptr;  // cuBLASLt's A = our b, B = our a
  cublasLtMatmulAlgo_t algo{};
  bool found = false;
};

using Key = std::array<int64_t, 16>;

int alignment_of(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  int a = 1;
  while (a < 256 && (v % static_cast<uintptr_t>(a * 2)) == 0) a *= 2;
  return a;
}

cudaDataType_t data_type(GemmType t) {
  switch (t) {
    case GemmType::F32: return CUDA_R_32F;
    case GemmType::BF16: return CUDA_R_16BF;
    case GemmType::F16: return CUDA_R_16F;
    case GemmType::F64: break;
  }
  return CUDA_R_64F;
}

void set_attr(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void* v, size_t n) {
  PEFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, v, n));
}

// A column-major layout: a row-major (rows, cols) matrix with leading dimension ld, read transposed.
cublasLtMatrixLayout_t layout(cudaDataType_t t, int64_t rm_rows, int64_t rm_cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  PEFT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, static_cast<uint64_t>(rm_cols), static_cast<uint64_t>(rm_rows), ld));
  return l;
}

void destroy(Plan& p) noexcept {
  if (p.la) (void)cublasLtMatrixLayoutDestroy(p.la);
  if (p.lb) (void)cublasLtMatrixLayoutDestroy(p.lb);
  if (p.lc) (void)cublasLtMatrixLayoutDestroy(p.lc);
  if (p.ld) (void)cublasLtMatrixLayoutDestroy(p.ld);
  if (p.desc) (void)cublasLtMatmulDescDestroy(p.desc);
  p = Plan{};
}

// Owns the descriptors until the plan is complete, so a throw part-way leaks nothing.
struct PlanGuard {
  Plan& p;
  bool keep = false;
  ~PlanGuard() {
    if (!keep) destroy(p);
  }
};

struct PrefGuard {
  cublasLtMatmulPreference_t pref = nullptr;
  ~PrefGuard() {
    if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
  }
};

Plan make_plan(cublasLtHandle_t handle, const LtGemm& g, const Key& key, size_t ws_bytes) {
  Plan p;
  PlanGuard guard{p};
  const cudaDataType_t ab = data_type(g.ab), cd = g.d_f32 ? CUDA_R_32F : ab;
  const cublasComputeType_t compute = g.tf32 && g.ab == GemmType::F32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  PEFT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, compute, CUDA_R_32F));
  // Column-major: D^T (N, M) = op(b)^T (N, K) · op(a)^T (K, M).
  const cublasOperation_t ta = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  set_attr(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  set_attr(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  const cublasLtEpilogue_t epi = g.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  set_attr(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi));
  if (g.bias) set_attr(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &cd, sizeof(cd));
  // Row-major shapes of the stored operands.
  p.la = g.trans_b ? layout(ab, g.N, g.K, g.ldb) : layout(ab, g.K, g.N, g.ldb);
  p.lb = g.trans_a ? layout(ab, g.K, g.M, g.lda) : layout(ab, g.M, g.K, g.lda);
  p.lc = layout(cd, g.M, g.N, g.beta != 0.f ? g.ldc : g.ldd);
  p.ld = layout(cd, g.M, g.N, g.ldd);

  PrefGuard pg;
  PEFT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pg.pref));
  cublasLtMatmulPreference_t pref = pg.pref;
  const uint64_t ws = ws_bytes;
  PEFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  const uint32_t al_a = static_cast<uint32_t>(key[12]), al_b = static_cast<uint32_t>(key[13]);
  const uint32_t al_c = static_cast<uint32_t>(key[14]), al_d = static_cast<uint32_t>(key[15]);
  PEFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_b, sizeof(al_b)));
  PEFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_a, sizeof(al_a)));
  PEFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c)));
  PEFT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d)));
  cublasLtMatmulHeuristicResult_t res{};
  int n = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.la, p.lb, p.lc, p.ld, pref, 1, &res, &n);
  // Any refusal (NOT_SUPPORTED, or INVALID_VALUE for a combination some versions reject) leaves the
  // plan unfound: the caller's cublasGemmEx fallback computes the same product.
  if (st == CUBLAS_STATUS_SUCCESS && n > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
    p.algo = res.algo;
    p.found = true;
    guard.keep = true;
    return p;
  }
  destroy(p);
  return Plan{};
}

}  // namespace

// ---------------------------------------------------------------------------- launcher

bool gemm_lt(cublasLtHandle_t handle, const LtGemm& g, void* workspace, size_t ws_bytes, cudaStream_t stream) {
  if (g.ab == GemmType::F64) return false;
  if (g.M == 0 || g.N == 0) return true;
  PEFT_CHECK(g.M <= INT_MAX && g.N <= INT_MAX && g.K <= INT_MAX && g.K >= 0, "gemm_lt: sizes (", g.M, ", ", g.N, ", ",
             g.K, ") outside cuBLASLt's range");
  PEFT_CHECK(g.a && g.b && g.d && (g.beta == 0.f || g.c), "gemm_lt: null operand");
  if (g.bias && alignment_of(g.bias) < 16) return false;  // the epilogue reads the bias in vectors
  const Key key = {static_cast<int64_t>(g.ab), g.tf32, g.d_f32, g.trans_a * 2 + g.trans_b, g.M, g.N, g.K, g.lda, g.ldb,
                   g.beta != 0.f ? g.ldc : -1, g.ldd, g.bias != nullptr ? alignment_of(g.bias) : 0,
                   alignment_of(g.a), alignment_of(g.b), g.beta != 0.f ? alignment_of(g.c) : alignment_of(g.d),
                   alignment_of(g.d)};
  static std::mutex mutex;
  static auto* cache = new std::map<std::pair<cublasLtHandle_t, Key>, Plan>();  // never freed: see memory.cu
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache->find({handle, key});
  if (it == cache->end()) it = cache->emplace(std::make_pair(handle, key), make_plan(handle, g, key, ws_bytes)).first;
  Plan& p = it->second;
  if (!p.found) return false;
  if (g.bias) set_attr(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias));
  const void* c = g.beta != 0.f ? g.c : g.d;
  PEFT_CUBLAS_CHECK(cublasLtMatmul(handle, p.desc, &g.alpha, g.b, p.la, g.a, p.lb, &g.beta, c, p.lc, g.d, p.ld, &p.algo,
                                   workspace, ws_bytes, stream));
  return true;
}

}  // namespace peft::kernels::cuda
