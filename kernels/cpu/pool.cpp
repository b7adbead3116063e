// kernels/cpu/pool.cpp — avg_pool2d forward/backward, one (n, c) plane per work item.
//
// The window arithmetic is PyTorch's CPU kernel, line for line: the window is first clipped
// to the padded input [-p, H + p) — that size is the count_include_pad divisor — then to the
// input [0, H) for the sum. ceil_mode windows can run past the padding, which is why the
// divisor is not simply kh*kw. Backward spreads dy / divisor over the same clipped window,
// so it is the exact adjoint of forward. Planes are independent: parallel over N*C.
#include "kernels/cpu/pool.h"

#include <algorithm>

namespace peft::kernels::cpu {

namespace {

struct Window {
  int64_t h0, h1, w0, w1;  // clipped to the input, half-open
  int64_t divisor;
};

Window window(const Pool2dShape& s, int64_t oh, int64_t ow) {
  int64_t h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
  int64_t h1 = std::min(h0 + s.kh, s.H + s.ph), w1 = std::min(w0 + s.kw, s.W + s.pw);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, s.H);
  w1 = std::min(w1, s.W);
  const int64_t inside = (h1 > h0 && w1 > w0) ? (h1 - h0) * (w1 - w0) : 0;
  return {h0, h1, w0, w1, s.count_include_pad ? padded : inside};
}

int64_t output_size(int64_t in, int64_t k, int64_t st, int64_t pad, bool ceil_mode) {
  if (st <= 0) return 0;
  const int64_t num = in + 2 * pad - k + (ceil_mode ? st - 1 : 0);
  if (num < 0) return 0;  // PyTorch rejects this; callers check Ho, Wo > 0
  int64_t out = num / st + 1;
  if (ceil_mode && (out - 1) * st >= in + pad) --out;
  return out;
}

}  // namespace

// ----------------------------------------------------------------------------------------

Pool2dShape pool2d_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool ceil_mode,
                         bool count_include_pad) {
  Pool2dShape s{N, C, H, W, kh, kw, sh, sw, ph, pw, 0, 0, ceil_mode, count_include_pad};
  s.Ho = output_size(H, kh, sh, ph, ceil_mode);
  s.Wo = output_size(W, kw, sw, pw, ceil_mode);
  return s;
}

template <class T>
void avg_pool2d_forward(const Pool2dShape& s, const T* x, T* y) {
  const int64_t planes = s.N * s.C;
  const int64_t HW = s.H * s.W, P = s.Ho * s.Wo;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (planes * P * s.kh * s.kw > (1 << 15))
#endif
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* xp = x + pl * HW;
    T* yp = y + pl * P;
    for (int64_t oh = 0; oh < s.Ho; ++oh) {
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        const Window win = window(s, oh, ow);
        if (win.h0 >= win.h1 || win.w0 >= win.w1) {
          yp[oh * s.Wo + ow] = T(0);
          continue;
        }
        T sum = 0;
        for (int64_t ih = win.h0; ih < win.h1; ++ih) {
          for (int64_t iw = win.w0; iw < win.w1; ++iw) sum += xp[ih * s.W + iw];
        }
        yp[oh * s.Wo + ow] = sum / static_cast<T>(win.divisor);
      }
    }
  }
}

template <class T>
void avg_pool2d_backward(const Pool2dShape& s, const T* dy, T* dx) {
  const int64_t planes = s.N * s.C;
  const int64_t HW = s.H * s.W, P = s.Ho * s.Wo;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (planes * P * s.kh * s.kw > (1 << 15))
#endif
  for (int64_t pl = 0; pl < planes; ++pl) {
    const T* dyp = dy + pl * P;
    T* dxp = dx + pl * HW;
    std::fill(dxp, dxp + HW, T(0));
    for (int64_t oh = 0; oh < s.Ho; ++oh) {
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        const Window win = window(s, oh, ow);
        if (win.h0 >= win.h1 || win.w0 >= win.w1) continue;
        const T g = dyp[oh * s.Wo + ow] / static_cast<T>(win.divisor);
        for (int64_t ih = win.h0; ih < win.h1; ++ih) {
          for (int64_t iw = win.w0; iw < win.w1; ++iw) dxp[ih * s.W + iw] += g;
        }
      }
    }
  }
}

template void avg_pool2d_forward<float>(const Pool2dShape&, const float*, float*);
template void avg_pool2d_forward<double>(const Pool2dShape&, const double*, double*);
template void avg_pool2d_backward<float>(const Pool2dShape&, const float*, float*);
template void avg_pool2d_backward<double>(const Pool2dShape&, const double*, double*);

}  // namespace peft::kernels::cpu
