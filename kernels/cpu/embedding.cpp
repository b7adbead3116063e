// kernels/cpu/embedding.cpp — embedding gather / scatter-add.
//
// Backward must handle repeated ids, so threads never split the token list: they split the
// embedding dimension into column blocks, each thread adding every token into its own
// block. No atomics, no per-thread copies of dw, and a fixed summation order (tokens in
// order), so the result is the same for any thread count.
#include "kernels/cpu/embedding.h"

#include <algorithm>
#include <cstring>

namespace peft::kernels::cpu {

namespace {

[[maybe_unused]] constexpr int64_t kParallelWork = 1 << 15;  // used by OpenMP pragmas only
constexpr int64_t kColBlock = 64;

}  // namespace

// ----------------------------------------------------------------------------------------

template <class T>
void embedding_forward(int64_t n, int64_t dim, const T* weight, const int64_t* ids, T* out) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n * dim > kParallelWork)
#endif
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * dim, weight + ids[i] * dim, static_cast<size_t>(dim) * sizeof(T));
  }
}

template <class T>
void embedding_backward(int64_t n, int64_t dim, int64_t V, const int64_t* ids, const T* dy,
                        T* dw, int64_t padding_idx) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (V * dim > kParallelWork)
#endif
  for (int64_t v = 0; v < V; ++v) std::fill(dw + v * dim, dw + (v + 1) * dim, T(0));

  const int64_t blocks = (dim + kColBlock - 1) / kColBlock;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n * dim > kParallelWork && blocks > 1)
#endif
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kColBlock, c1 = std::min(dim, c0 + kColBlock);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = ids[i];
      if (padding_idx >= 0 && id == padding_idx) continue;
      const T* src = dy + i * dim;
      T* dst = dw + id * dim;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

template void embedding_forward<float>(int64_t, int64_t, const float*, const int64_t*, float*);
template void embedding_forward<double>(int64_t, int64_t, const double*, const int64_t*,
                                        double*);
template void embedding_backward<float>(int64_t, int64_t, int64_t, const int64_t*,
                                        const float*, float*, int64_t);
template void embedding_backward<double>(int64_t, int64_t, int64_t, const int64_t*,
                                         const double*, double*, int64_t);

}  // namespace peft::kernels::cpu
