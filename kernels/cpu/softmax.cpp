// kernels/cpu/softmax.cpp — softmax / log_softmax over the middle dim of (outer, D, inner).
//
// Work is cut into tiles of (one outer index) x (up to kTile inner columns); a tile walks D
// rows, each a contiguous run of inner values, so the channel case (dim 1 of NCHW) streams
// memory in order; those sums accumulate in double. The common last-dim case (inner == 1)
// instead treats each of the outer rows as one contiguous Eigen array, whose vectorised
// exp and reductions are several times faster than a scalar loop. Rows / tiles run in
// parallel. The max is always subtracted before exp.
#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/eigen.h"

namespace peft::kernels::cpu {

namespace {

constexpr int64_t kTile = 128;
[[maybe_unused]] constexpr int64_t kParallelWork = 1 << 14;  // used by OpenMP pragmas only

template <class T>
using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstRow = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

template <class T>
void softmax_rows(int64_t rows, int64_t D, const T* x, T* y, bool log) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (rows * D > kParallelWork)
#endif
  for (int64_t r = 0; r < rows; ++r) {
    ConstRow<T> xr(x + r * D, D);
    Row<T> yr(y + r * D, D);
    const T mx = xr.maxCoeff();
    if (log) {
      const T lse = mx + std::log((xr - mx).exp().sum());
      yr = xr - lse;
    } else {
      yr = (xr - mx).exp();
      yr *= T(1) / yr.sum();
    }
  }
}

template <class T>
void softmax_rows_backward(int64_t rows, int64_t D, const T* y, const T* dy, T* dx, bool log) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (rows * D > kParallelWork)
#endif
  for (int64_t r = 0; r < rows; ++r) {
    ConstRow<T> yr(y + r * D, D), gr(dy + r * D, D);
    Row<T> dr(dx + r * D, D);
    if (log) {
      dr = gr - yr.exp() * gr.sum();
    } else {
      dr = yr * (gr - (gr * yr).sum());
    }
  }
}

}  // namespace

// ----------------------------------------------------------------------------------------

template <class T>
void softmax_forward(int64_t outer, int64_t D, int64_t inner, const T* x, T* y, bool log) {
  if (D <= 0) return;
  if (inner == 1) return softmax_rows(outer, D, x, y, log);
  const int64_t tiles_per = (inner + kTile - 1) / kTile, tiles = outer * tiles_per;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (outer * D * inner > kParallelWork)
#endif
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t o = t / tiles_per, i0 = (t % tiles_per) * kTile;
    const int64_t w = std::min(kTile, inner - i0);
    const T* xo = x + o * D * inner + i0;
    T* yo = y + o * D * inner + i0;
    T mx[kTile];
    double sum[kTile];
    std::fill(mx, mx + w, -std::numeric_limits<T>::infinity());
    std::fill(sum, sum + w, 0.0);
    for (int64_t d = 0; d < D; ++d) {
      const T* xr = xo + d * inner;
      for (int64_t i = 0; i < w; ++i) mx[i] = std::max(mx[i], xr[i]);
    }
    for (int64_t d = 0; d < D; ++d) {
      const T* xr = xo + d * inner;
      T* yr = yo + d * inner;
      for (int64_t i = 0; i < w; ++i) {
        const T e = std::exp(xr[i] - mx[i]);
        if (!log) yr[i] = e;
        sum[i] += static_cast<double>(e);
      }
    }
    if (log) {
      T shift[kTile];  // max + log(sum)
      for (int64_t i = 0; i < w; ++i) shift[i] = mx[i] + static_cast<T>(std::log(sum[i]));
      for (int64_t d = 0; d < D; ++d) {
        const T* xr = xo + d * inner;
        T* yr = yo + d * inner;
        for (int64_t i = 0; i < w; ++i) yr[i] = xr[i] - shift[i];
      }
    } else {
      T inv[kTile];
      for (int64_t i = 0; i < w; ++i) inv[i] = static_cast<T>(1.0 / sum[i]);
      for (int64_t d = 0; d < D; ++d) {
        T* yr = yo + d * inner;
        for (int64_t i = 0; i < w; ++i) yr[i] *= inv[i];
      }
    }
  }
}

template <class T>
void softmax_backward(int64_t outer, int64_t D, int64_t inner, const T* y, const T* dy, T* dx,
                      bool log) {
  if (D <= 0) return;
  if (inner == 1) return softmax_rows_backward(outer, D, y, dy, dx, log);
  const int64_t tiles_per = (inner + kTile - 1) / kTile, tiles = outer * tiles_per;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (outer * D * inner > kParallelWork)
#endif
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t o = t / tiles_per, i0 = (t % tiles_per) * kTile;
    const int64_t w = std::min(kTile, inner - i0);
    const int64_t base = o * D * inner + i0;
    double acc[kTile];
    std::fill(acc, acc + w, 0.0);
    // softmax: sum(dy * y); log_softmax: sum(dy)
    for (int64_t d = 0; d < D; ++d) {
      const T* yr = y + base + d * inner;
      const T* gr = dy + base + d * inner;
      for (int64_t i = 0; i < w; ++i) {
        acc[i] += log ? static_cast<double>(gr[i])
                      : static_cast<double>(gr[i]) * static_cast<double>(yr[i]);
      }
    }
    T s[kTile];
    for (int64_t i = 0; i < w; ++i) s[i] = static_cast<T>(acc[i]);
    for (int64_t d = 0; d < D; ++d) {
      const T* yr = y + base + d * inner;
      const T* gr = dy + base + d * inner;
      T* dr = dx + base + d * inner;
      if (log) {
        for (int64_t i = 0; i < w; ++i) dr[i] = gr[i] - std::exp(yr[i]) * s[i];
      } else {
        for (int64_t i = 0; i < w; ++i) dr[i] = yr[i] * (gr[i] - s[i]);
      }
    }
  }
}

template void softmax_forward<float>(int64_t, int64_t, int64_t, const float*, float*, bool);
template void softmax_forward<double>(int64_t, int64_t, int64_t, const double*, double*, bool);
template void softmax_backward<float>(int64_t, int64_t, int64_t, const float*, const float*,
                                      float*, bool);
template void softmax_backward<double>(int64_t, int64_t, int64_t, const double*,
                                       const double*, double*, bool);

}  // namespace peft::kernels::cpu
