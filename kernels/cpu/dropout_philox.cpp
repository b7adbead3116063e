// kernels/cpu/dropout_philox.cpp — see the header. Work is cut into Philox blocks of 4 elements
// (one generator call each), so a thread never computes a block twice; blocks are independent,
// hence parallel with any thread count and the same result.
#include "kernels/cpu/dropout_philox.h"

#include "kernels/philox.h"

namespace peft::kernels::cpu {

namespace {

[[maybe_unused]] constexpr int64_t kParallelWork = 1 << 15;  // used by OpenMP pragmas only

// Calls f(i, keep) for every element, one Philox block per 4 elements.
template <class F>
void for_each_keep(int64_t n, double p, uint64_t seed, uint64_t offset, F f) {
  const float pf = static_cast<float>(p);
  const int64_t blocks = (n + 3) / 4;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n > kParallelWork)
#endif
  for (int64_t b = 0; b < blocks; ++b) {
    const Philox4x32 r = philox_block(seed, offset, static_cast<uint64_t>(b) * 4);
    for (int64_t k = 0; k < 4 && b * 4 + k < n; ++k) f(b * 4 + k, !(philox_word_to_uniform(r.v[k]) < pf));
  }
}

}  // namespace

void dropout_philox_mask(int64_t n, double p, uint64_t seed, uint64_t offset, uint8_t* mask) {
  for_each_keep(n, p, seed, offset, [mask](int64_t i, bool keep) { mask[i] = keep ? 1 : 0; });
}

template <class T>
void dropout_philox_forward(int64_t n, double p, uint64_t seed, uint64_t offset, const T* x, T* y) {
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  for_each_keep(n, p, seed, offset, [=](int64_t i, bool keep) { y[i] = keep ? x[i] * scale : T(0); });
}

template <class T>
void dropout_philox_backward(int64_t n, double p, uint64_t seed, uint64_t offset, const T* dy, T* dx) {
  dropout_philox_forward(n, p, seed, offset, dy, dx);  // the op is linear in x: same mask, same scale
}

template void dropout_philox_forward<float>(int64_t, double, uint64_t, uint64_t, const float*, float*);
template void dropout_philox_forward<double>(int64_t, double, uint64_t, uint64_t, const double*, double*);
template void dropout_philox_backward<float>(int64_t, double, uint64_t, uint64_t, const float*, float*);
template void dropout_philox_backward<double>(int64_t, double, uint64_t, uint64_t, const double*, double*);

}  // namespace peft::kernels::cpu
