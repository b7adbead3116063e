// kernels/cpu/norm.cpp — group_norm / layer_norm on contiguous rows.
//
// Statistics and reductions accumulate in double whatever T is, two-pass (mean, then the
// centred sum of squares), so float inputs with a large mean keep their variance. Backward
// uses the closed form per normalised set of n elements, with g = dy * gamma:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),   xhat = (x - mean) * rstd
// dw / db reduce over the batch; they are parallelised over channels (group_norm) or over
// column blocks (layer_norm), so every sum has a fixed order and no thread shares an output.
#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace peft::kernels::cpu {

namespace {

constexpr int64_t kParallelWork = 1 << 15;

// mean and rstd of n contiguous values, in double. Eight independent partial sums let the
// compiler vectorise the float -> double loop (one accumulator is a serial chain).
template <class T>
void moments(const T* x, int64_t n, double eps, double& mean, double& rstd) {
  constexpr int64_t L = 8;
  const int64_t nv = n - n % L;
  double acc[L] = {};
  for (int64_t i = 0; i < nv; i += L) {
    for (int64_t k = 0; k < L; ++k) acc[k] += static_cast<double>(x[i + k]);
  }
  for (int64_t i = nv; i < n; ++i) acc[0] += static_cast<double>(x[i]);
  double sum = 0;
  for (double a : acc) sum += a;
  mean = n > 0 ? sum / static_cast<double>(n) : 0.0;
  double sq[L] = {};
  for (int64_t i = 0; i < nv; i += L) {
    for (int64_t k = 0; k < L; ++k) {
      const double d = static_cast<double>(x[i + k]) - mean;
      sq[k] += d * d;
    }
  }
  for (int64_t i = nv; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - mean;
    sq[0] += d * d;
  }
  double ss = 0;
  for (double a : sq) ss += a;
  const double var = n > 0 ? ss / static_cast<double>(n) : 0.0;
  rstd = 1.0 / std::sqrt(var + eps);
}

}  // namespace

// ---------------------------------------------------------------------------- group_norm

template <class T>
void group_norm_forward(int64_t N, int64_t C, int64_t S, int64_t G, T eps, const T* x,
                        const T* w, const T* b, T* y, T* mean, T* rstd) {
  const int64_t Cg = C / G, n = Cg * S;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (N * C * S > kParallelWork)
#endif
  for (int64_t ng = 0; ng < N * G; ++ng) {
    const int64_t g = ng % G;
    const T* xs = x + ng * n;
    T* ys = y + ng * n;
    double m, r;
    moments(xs, n, static_cast<double>(eps), m, r);
    mean[ng] = static_cast<T>(m);
    rstd[ng] = static_cast<T>(r);
    for (int64_t c = 0; c < Cg; ++c) {
      const int64_t ch = g * Cg + c;
      // y = x * scale + shift, folded per channel
      const double gamma = w != nullptr ? static_cast<double>(w[ch]) : 1.0;
      const double beta = b != nullptr ? static_cast<double>(b[ch]) : 0.0;
      const double scale = r * gamma, shift = beta - m * scale;
      const T* xc = xs + c * S;
      T* yc = ys + c * S;
      for (int64_t i = 0; i < S; ++i) {
        yc[i] = static_cast<T>(static_cast<double>(xc[i]) * scale + shift);
      }
    }
  }
}

template <class T>
void group_norm_backward(int64_t N, int64_t C, int64_t S, int64_t G, const T* x, const T* w,
                         const T* mean, const T* rstd, const T* dy, T* dx, T* dw, T* db) {
  const int64_t Cg = C / G, n = Cg * S;
  [[maybe_unused]] const bool big = N * C * S > kParallelWork;

  if (dx != nullptr) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (big)
#endif
    for (int64_t ng = 0; ng < N * G; ++ng) {
      const int64_t g = ng % G;
      const T* xs = x + ng * n;
      const T* dys = dy + ng * n;
      T* dxs = dx + ng * n;
      const double m = static_cast<double>(mean[ng]), r = static_cast<double>(rstd[ng]);
      // sum(g) and sum(g * xhat) over the group, g = dy * gamma
      double sg = 0, sgx = 0;
      for (int64_t c = 0; c < Cg; ++c) {
        const double gamma = w != nullptr ? static_cast<double>(w[g * Cg + c]) : 1.0;
        double a = 0, ax = 0;
        for (int64_t i = 0; i < S; ++i) {
          const double d = static_cast<double>(dys[c * S + i]);
          a += d;
          ax += d * (static_cast<double>(xs[c * S + i]) - m);
        }
        sg += gamma * a;
        sgx += gamma * ax * r;
      }
      const double inv_n = n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
      const double mg = sg * inv_n, mgx = sgx * inv_n;
      for (int64_t c = 0; c < Cg; ++c) {
        const double gamma = w != nullptr ? static_cast<double>(w[g * Cg + c]) : 1.0;
        for (int64_t i = 0; i < S; ++i) {
          const int64_t k = c * S + i;
          const double xhat = (static_cast<double>(xs[k]) - m) * r;
          dxs[k] = static_cast<T>(r * (gamma * static_cast<double>(dys[k]) - mg - xhat * mgx));
        }
      }
    }
  }

  if (dw != nullptr || db != nullptr) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (big)
#endif
    for (int64_t c = 0; c < C; ++c) {
      const int64_t g = c / Cg;
      double sw = 0, sb = 0;
      for (int64_t b = 0; b < N; ++b) {
        const double m = static_cast<double>(mean[b * G + g]);
        const double r = static_cast<double>(rstd[b * G + g]);
        const T* xc = x + (b * C + c) * S;
        const T* dyc = dy + (b * C + c) * S;
        double a = 0, ax = 0;
        for (int64_t i = 0; i < S; ++i) {
          const double d = static_cast<double>(dyc[i]);
          a += d;
          ax += d * (static_cast<double>(xc[i]) - m);
        }
        sb += a;
        sw += ax * r;
      }
      if (dw != nullptr) dw[c] = static_cast<T>(sw);
      if (db != nullptr) db[c] = static_cast<T>(sb);
    }
  }
}

// ---------------------------------------------------------------------------- layer_norm

template <class T>
void layer_norm_forward(int64_t R, int64_t M, T eps, const T* x, const T* w, const T* b, T* y,
                        T* mean, T* rstd) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (R * M > kParallelWork)
#endif
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * M;
    T* yr = y + r * M;
    double m, rs;
    moments(xr, M, static_cast<double>(eps), m, rs);
    mean[r] = static_cast<T>(m);
    rstd[r] = static_cast<T>(rs);
    if (w != nullptr && b != nullptr) {  // the common case, kept branch-free to vectorise
      for (int64_t i = 0; i < M; ++i) {
        const double xhat = (static_cast<double>(xr[i]) - m) * rs;
        yr[i] = static_cast<T>(xhat * static_cast<double>(w[i]) + static_cast<double>(b[i]));
      }
      continue;
    }
    for (int64_t i = 0; i < M; ++i) {
      double v = (static_cast<double>(xr[i]) - m) * rs;
      if (w != nullptr) v *= static_cast<double>(w[i]);
      if (b != nullptr) v += static_cast<double>(b[i]);
      yr[i] = static_cast<T>(v);
    }
  }
}

template <class T>
void layer_norm_backward(int64_t R, int64_t M, const T* x, const T* w, const T* mean,
                         const T* rstd, const T* dy, T* dx, T* dw, T* db) {
  [[maybe_unused]] const bool big = R * M > kParallelWork;
  if (dx != nullptr) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (big)
#endif
    for (int64_t r = 0; r < R; ++r) {
      const T* xr = x + r * M;
      const T* dyr = dy + r * M;
      T* dxr = dx + r * M;
      const double m = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
      double sg = 0, sgx = 0;
      for (int64_t i = 0; i < M; ++i) {
        double g = static_cast<double>(dyr[i]);
        if (w != nullptr) g *= static_cast<double>(w[i]);
        sg += g;
        sgx += g * (static_cast<double>(xr[i]) - m) * rs;
      }
      const double inv_m = M > 0 ? 1.0 / static_cast<double>(M) : 0.0;
      const double mg = sg * inv_m, mgx = sgx * inv_m;
      for (int64_t i = 0; i < M; ++i) {
        double g = static_cast<double>(dyr[i]);
        if (w != nullptr) g *= static_cast<double>(w[i]);
        const double xhat = (static_cast<double>(xr[i]) - m) * rs;
        dxr[i] = static_cast<T>(rs * (g - mg - xhat * mgx));
      }
    }
  }

  if (dw != nullptr || db != nullptr) {
    // Column blocks: each thread owns a block of dw / db and walks all rows over it.
    constexpr int64_t kBlock = 256;
    const int64_t blocks = (M + kBlock - 1) / kBlock;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (big && blocks > 1)
#endif
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t i0 = blk * kBlock, i1 = std::min(M, i0 + kBlock);
      double sw[kBlock] = {}, sb[kBlock] = {};
      for (int64_t r = 0; r < R; ++r) {
        const T* xr = x + r * M;
        const T* dyr = dy + r * M;
        const double m = static_cast<double>(mean[r]), rs = static_cast<double>(rstd[r]);
        for (int64_t i = i0; i < i1; ++i) {
          const double d = static_cast<double>(dyr[i]);
          sb[i - i0] += d;
          sw[i - i0] += d * (static_cast<double>(xr[i]) - m) * rs;
        }
      }
      for (int64_t i = i0; i < i1; ++i) {
        if (dw != nullptr) dw[i] = static_cast<T>(sw[i - i0]);
        if (db != nullptr) db[i] = static_cast<T>(sb[i - i0]);
      }
    }
  }
}

// ----------------------------------------------------------------------------------------

template void group_norm_forward<float>(int64_t, int64_t, int64_t, int64_t, float,
                                        const float*, const float*, const float*, float*,
                                        float*, float*);
template void group_norm_forward<double>(int64_t, int64_t, int64_t, int64_t, double,
                                         const double*, const double*, const double*,
                                         double*, double*, double*);
template void group_norm_backward<float>(int64_t, int64_t, int64_t, int64_t, const float*,
                                         const float*, const float*, const float*,
                                         const float*, float*, float*, float*);
template void group_norm_backward<double>(int64_t, int64_t, int64_t, int64_t, const double*,
                                          const double*, const double*, const double*,
                                          const double*, double*, double*, double*);
template void layer_norm_forward<float>(int64_t, int64_t, float, const float*, const float*,
                                        const float*, float*, float*, float*);
template void layer_norm_forward<double>(int64_t, int64_t, double, const double*,
                                         const double*, const double*, double*, double*,
                                         double*);
template void layer_norm_backward<float>(int64_t, int64_t, const float*, const float*,
                                         const float*, const float*, const float*, float*,
                                         float*, float*);
template void layer_norm_backward<double>(int64_t, int64_t, const double*, const double*,
                                          const double*, const double*, const double*,
                                          double*, double*, double*);

}  // namespace peft::kernels::cpu
