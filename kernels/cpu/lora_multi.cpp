// SGMV-style on the CPU: rows are grouped by adapter, and each adapter's rows are processed
// together so its A and B stream through the cache once per batch rather than once per row
// (decode batches are weight-bandwidth bound). Shrink: for each rank component k, A_a's row k
// against every row of the group; expand: for each output o, B_a's row o against every row's u.
// Both inner loops are SIMD dot products accumulating in T (F32 as PyTorch's F32 GEMM does).
// Adapters are independent, so OpenMP splits them (dynamic: groups differ in size).
#include "kernels/cpu/lora_multi.h"

#include <cstddef>
#include <vector>

namespace peft::kernels::cpu {

namespace {
template <class T>
inline T dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}
}  // namespace

template <class T, class Y>
void lora_multi_add(int64_t N, int64_t in, int64_t out, const T* x, const Y* y, Y* out_y, const int64_t* row_adapter,
                    const LoraMultiAdapter* adapters) {
  int64_t n_adapters = 0;
  for (int64_t n = 0; n < N; ++n) n_adapters = row_adapter[n] + 1 > n_adapters ? row_adapter[n] + 1 : n_adapters;
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(n_adapters));
  for (int64_t n = 0; n < N; ++n) {
    if (row_adapter[n] >= 0) {
      groups[static_cast<size_t>(row_adapter[n])].push_back(n);
    } else if (out_y != y) {
      for (int64_t o = 0; o < out; ++o) out_y[n * out + o] = y[n * out + o];
    }
  }
#pragma omp parallel for schedule(dynamic, 1) if (n_adapters > 1 && N * (in + out) > 16384)
  for (int64_t a = 0; a < n_adapters; ++a) {
    const std::vector<int64_t>& rows = groups[static_cast<size_t>(a)];
    if (rows.empty()) continue;
    const LoraMultiAdapter& ad = adapters[a];
    const T* A = static_cast<const T*>(ad.A);
    const T* B = static_cast<const T*>(ad.B);
    const int64_t m = static_cast<int64_t>(rows.size()), r = ad.r;
    std::vector<T> u(static_cast<size_t>(m * r));  // (m, r)
    for (int64_t k = 0; k < r; ++k)
      for (int64_t j = 0; j < m; ++j) u[static_cast<size_t>(j * r + k)] = dot(x + rows[j] * in, A + k * in, in);
    const T s = static_cast<T>(ad.scale);
    for (int64_t o = 0; o < out; ++o) {
      const T* Bo = B + o * r;
      for (int64_t j = 0; j < m; ++j) {
        const int64_t idx = rows[j] * out + o;
        // PEFT: result[rows] += (lora_B(lora_A(x)) * scaling).to(result.dtype)
        out_y[idx] = static_cast<Y>(static_cast<Y>(dot(u.data() + j * r, Bo, r) * s) + y[idx]);
      }
    }
  }
}

template void lora_multi_add<float, float>(int64_t, int64_t, int64_t, const float*, const float*, float*,
                                           const int64_t*, const LoraMultiAdapter*);
template void lora_multi_add<double, double>(int64_t, int64_t, int64_t, const double*, const double*, double*,
                                             const int64_t*, const LoraMultiAdapter*);
template void lora_multi_add<float, double>(int64_t, int64_t, int64_t, const float*, const double*, double*,
                                            const int64_t*, const LoraMultiAdapter*);

}  // namespace peft::kernels::cpu
