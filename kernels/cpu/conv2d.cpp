// kernels/cpu/conv2d.cpp — conv2d forward/backward as im2col + gemm.
//
// Per (sample n, group g) with K = C/groups*kh*kw and P = Ho*Wo:
//   forward:  y[n,g] (O/g, P)  = w[g] (O/g, K) * col (K, P)            (+ bias)
//   dx:       dcol (K, P)      = w[g]^T * dy[n,g];  col2im scatter-adds dcol into dx[n,g]
//   dw:       dw[g] (O/g, K)  += dy[n,g] (O/g, P) * col^T (P, K)
// A 1x1, stride-1, unpadded conv has col == x[n,g], so it multiplies x directly.
// The (n, g) items run in parallel; each thread owns its column buffer and, for dw, its
// own accumulator, summed afterwards in thread order (deterministic for a given thread
// count). With a single item the loop stays serial so Eigen's GEMM can use the threads.
#include "kernels/cpu/conv2d.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace peft::kernels::cpu {

namespace {

int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

bool is_pointwise(const Conv2dShape& s) {
  return s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0;
}

// col (Cg*kh*kw, Ho*Wo) from one group's input planes x (Cg, H, W).
template <class T>
void im2col(const Conv2dShape& s, int64_t Cg, const T* x, T* col) {
  const int64_t P = s.Ho * s.Wo;
  for (int64_t c = 0; c < Cg; ++c) {
    const T* xc = x + c * s.H * s.W;
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j) {
        T* row = col + ((c * s.kh + i) * s.kw + j) * P;
        for (int64_t oh = 0; oh < s.Ho; ++oh) {
          T* out = row + oh * s.Wo;
          const int64_t ih = oh * s.sh - s.ph + i * s.dh;
          if (ih < 0 || ih >= s.H) {
            std::fill(out, out + s.Wo, T(0));
            continue;
          }
          const T* xr = xc + ih * s.W;
          const int64_t iw0 = j * s.dw - s.pw;
          for (int64_t ow = 0; ow < s.Wo; ++ow) {
            const int64_t iw = iw0 + ow * s.sw;
            out[ow] = (iw >= 0 && iw < s.W) ? xr[iw] : T(0);
          }
        }
      }
    }
  }
}

// dx (Cg, H, W) += scatter of dcol (Cg*kh*kw, Ho*Wo); the adjoint of im2col.
template <class T>
void col2im_add(const Conv2dShape& s, int64_t Cg, const T* col, T* dx) {
  const int64_t P = s.Ho * s.Wo;
  for (int64_t c = 0; c < Cg; ++c) {
    T* dxc = dx + c * s.H * s.W;
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j) {
        const T* row = col + ((c * s.kh + i) * s.kw + j) * P;
        for (int64_t oh = 0; oh < s.Ho; ++oh) {
          const int64_t ih = oh * s.sh - s.ph + i * s.dh;
          if (ih < 0 || ih >= s.H) continue;
          const T* in = row + oh * s.Wo;
          T* dxr = dxc + ih * s.W;
          const int64_t iw0 = j * s.dw - s.pw;
          for (int64_t ow = 0; ow < s.Wo; ++ow) {
            const int64_t iw = iw0 + ow * s.sw;
            if (iw >= 0 && iw < s.W) dxr[iw] += in[ow];
          }
        }
      }
    }
  }
}

}  // namespace

// ----------------------------------------------------------------------------------------

Conv2dShape conv2d_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                         int64_t dh, int64_t dw, int64_t groups) {
  auto out = [](int64_t in, int64_t k, int64_t st, int64_t pad, int64_t dil) -> int64_t {
    const int64_t span = in + 2 * pad - dil * (k - 1) - 1;
    return (span < 0 || st <= 0) ? 0 : span / st + 1;
  };
  Conv2dShape s{N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups, 0, 0};
  s.Ho = out(H, kh, sh, ph, dh);
  s.Wo = out(W, kw, sw, pw, dw);
  return s;
}

template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups;
  const int64_t K = Cg * s.kh * s.kw, P = s.Ho * s.Wo, HW = s.H * s.W;
  const int64_t items = s.N * s.groups;
  if (items == 0 || P == 0 || Og == 0) return;
  const bool direct = is_pointwise(s);

#ifdef _OPENMP
#pragma omp parallel if (items > 1)
#endif
  {
    std::vector<T> col(direct ? 0 : static_cast<size_t>(K * P));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / s.groups, g = it % s.groups;
      const T* xg = x + (n * s.C + g * Cg) * HW;
      T* yg = y + (n * s.O + g * Og) * P;
      const T* src = xg;
      if (!direct) {
        im2col(s, Cg, xg, col.data());
        src = col.data();
      }
      gemm<T>(false, false, Og, P, K, T(1), w + g * Og * K, K, src, P, T(0), yg, P);
      if (b != nullptr) {
        for (int64_t o = 0; o < Og; ++o) {
          const T bo = b[g * Og + o];
          T* yo = yg + o * P;
          for (int64_t p = 0; p < P; ++p) yo[p] += bo;
        }
      }
    }
  }
}

template <class T>
void conv2d_backward(const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx, T* dw,
                     T* db) {
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups;
  const int64_t K = Cg * s.kh * s.kw, P = s.Ho * s.Wo, HW = s.H * s.W;
  const int64_t items = s.N * s.groups;
  const int64_t wsize = s.O * K;

  if (db != nullptr) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (s.N * s.O * P > (1 << 16))
#endif
    for (int64_t o = 0; o < s.O; ++o) {
      double acc = 0;  // a long sum over N*P terms
      for (int64_t n = 0; n < s.N; ++n) {
        const T* d = dy + (n * s.O + o) * P;
        for (int64_t p = 0; p < P; ++p) acc += static_cast<double>(d[p]);
      }
      db[o] = static_cast<T>(acc);
    }
  }
  const bool direct = is_pointwise(s);
  const bool trivial = items == 0 || P == 0 || Og == 0 || K == 0;
  // The pointwise path overwrites every dx slice with its gemm (beta = 0).
  if (dx != nullptr && (trivial || !direct)) std::fill(dx, dx + s.N * s.C * HW, T(0));
  if (dw != nullptr) std::fill(dw, dw + wsize, T(0));
  if ((dx == nullptr && dw == nullptr) || trivial) return;

  const bool parallel = items > 1;
  // One dw accumulator per thread; thread 0 (and the serial case) writes dw itself.
  const int nthreads = parallel ? max_threads() : 1;
  std::vector<std::vector<T>> dw_partial(dw != nullptr ? static_cast<size_t>(nthreads - 1) : 0);

#ifdef _OPENMP
#pragma omp parallel if (parallel)
#endif
  {
    const int tid = thread_id();
    T* dw_acc = dw;
    if (dw != nullptr && tid > 0) {
      dw_partial[tid - 1].assign(static_cast<size_t>(wsize), T(0));
      dw_acc = dw_partial[tid - 1].data();
    }
    std::vector<T> col(direct ? 0 : static_cast<size_t>(K * P));
    std::vector<T> dcol(direct || dx == nullptr ? 0 : static_cast<size_t>(K * P));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / s.groups, g = it % s.groups;
      const T* dyg = dy + (n * s.O + g * Og) * P;
      const T* wg = w != nullptr ? w + g * Og * K : nullptr;
      if (dw != nullptr) {
        const T* xg = x + (n * s.C + g * Cg) * HW;
        const T* src = xg;
        if (!direct) {
          im2col(s, Cg, xg, col.data());
          src = col.data();
        }
        gemm<T>(false, true, Og, K, P, T(1), dyg, P, src, P, T(1), dw_acc + g * Og * K, K);
      }
      if (dx != nullptr) {
        T* dxg = dx + (n * s.C + g * Cg) * HW;
        if (direct) {
          gemm<T>(true, false, K, P, Og, T(1), wg, K, dyg, P, T(0), dxg, P);
        } else {
          gemm<T>(true, false, K, P, Og, T(1), wg, K, dyg, P, T(0), dcol.data(), P);
          col2im_add(s, Cg, dcol.data(), dxg);
        }
      }
    }
  }

  if (dw != nullptr && !dw_partial.empty()) {
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (wsize > 4096)
#endif
    for (int64_t i = 0; i < wsize; ++i) {
      T acc = dw[i];
      for (const auto& part : dw_partial) {
        if (!part.empty()) acc += part[static_cast<size_t>(i)];
      }
      dw[i] = acc;
    }
  }
}

template void conv2d_forward<float>(const Conv2dShape&, const float*, const float*,
                                    const float*, float*);
template void conv2d_forward<double>(const Conv2dShape&, const double*, const double*,
                                     const double*, double*);
template void conv2d_backward<float>(const Conv2dShape&, const float*, const float*,
                                     const float*, float*, float*, float*);
template void conv2d_backward<double>(const Conv2dShape&, const double*, const double*,
                                      const double*, double*, double*, double*);

}  // namespace peft::kernels::cpu
