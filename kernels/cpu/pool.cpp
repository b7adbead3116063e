// kernels/cpu/pool.cpp — avg_pool2d forward/backward, one (n, c) plane per work item.
//
// The window arithmetic is PyTorch's CPU kernel, line for line: the window is first clipped
// to the padded input [-p, H + p) — that size is the count_include_pad divisor — then to the
// input [0, H) for the sum. ceil_mode windows can run past the padding, which is why the
// divisor is not simply kh*kw. Backward spreads dy / divisor over the same clipped window,
// so it is the exact adjoint of forward. Planes are independent: parallel over N*C.
//
// Stride 1 (PoolFormer's token mixer: 3x3, pad 1, every block) takes a separable fast path.
// A window is then a box [o - p, o - p + k) per axis clipped to the input, so a plane is a
// vertical k-row sum into a zero-padded row buffer followed by a horizontal k-tap sum along
// it: contiguous loops GCC vectorises, O(kh + kw) adds per output instead of O(kh * kw)
// gathers. The divisor still comes from window() itself, once per call as a reciprocal
// table shared by all planes, so both paths divide by the same count. Backward is the same
// box sum: input (ih, iw) is in the window of oh exactly when oh is in [ih + p - k + 1, ih + p],
// i.e. a box with pad k - 1 - p over dy * (1 / divisor). With p < k that pad is >= 0 and the
// clipping to [0, Ho) is again the plane edge, so it needs no special border case.
// The fast path sums in a different order and multiplies by a rounded reciprocal: results
// differ from the generic loop by float rounding only.
#include "kernels/cpu/pool.h"

#include <algorithm>
#include <vector>

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

// ------------------------------------------------------------------------- stride-1 path

// With stride 1 the padded clip in window() never binds (o - p + k <= H + p for every output
// o, ceil_mode or not, as long as p < k), so windows are separable boxes. p < k is all
// PyTorch allows (p <= k / 2); anything else goes the generic way.
bool stride1_box(const Pool2dShape& s) {
  return s.sh == 1 && s.sw == 1 && s.ph >= 0 && s.pw >= 0 && s.ph < s.kh && s.pw < s.kw &&
         s.Ho > 0 && s.Wo > 0;
}

// out[o] = post[o] * sum over in[i] * pre[i], i in [o - p, o - p + k) clipped to the input,
// per axis; pre and post may be null (= 1). One plane of Hi x Wi in, Ho x Wo out.
struct Box {
  int64_t Hi, Wi, Ho, Wo, kh, kw, ph, pw;
  // The row buffer holds the vertical sums at [pw, pw + Wi) and zeros around them, so the
  // horizontal pass reads buf[ow .. ow + kw) for every ow without a border test.
  int64_t buf_len() const { return std::max(Wo + kw - 1, pw + Wi); }
};

// v[iw] = sum over `rows` consecutive rows (stride n) of in, times pre when kScaled. Three
// rows (every interior row of a 3x3 pool) in one pass; the row loops are short for late
// PoolFormer stages (7 wide), so passes over v, not adds, are what costs.
template <class T, bool kScaled>
void vertical_sum(const T* __restrict in, const T* __restrict pre, int64_t rows, int64_t n,
                  T* __restrict v) {
  auto at = [&](int64_t i) { return kScaled ? in[i] * pre[i] : in[i]; };
  if (rows == 3) {
    for (int64_t iw = 0; iw < n; ++iw) v[iw] = at(iw) + at(n + iw) + at(2 * n + iw);
    return;
  }
  for (int64_t iw = 0; iw < n; ++iw) v[iw] = at(iw);
  for (int64_t r = 1; r < rows; ++r)
    for (int64_t iw = 0; iw < n; ++iw) v[iw] += at(r * n + iw);
}

template <class T>
void box_sum_plane(const Box& b, const T* __restrict in, const T* __restrict pre,
                   const T* __restrict post, T* __restrict out, T* __restrict buf) {
  T* v = buf + b.pw;  // not __restrict: it aliases buf, which the horizontal pass reads
  for (int64_t oh = 0; oh < b.Ho; ++oh) {
    const int64_t r0 = std::max<int64_t>(oh - b.ph, 0), r1 = std::min(oh - b.ph + b.kh, b.Hi);
    if (r0 >= r1) std::fill(v, v + b.Wi, T(0));
    else if (pre) vertical_sum<T, true>(in + r0 * b.Wi, pre + r0 * b.Wi, r1 - r0, b.Wi, v);
    else vertical_sum<T, false>(in + r0 * b.Wi, nullptr, r1 - r0, b.Wi, v);
    T* o = out + oh * b.Wo;
    const T* so = post ? post + oh * b.Wo : nullptr;
    if (b.kw == 3 && so) {  // PoolFormer's forward and backward rows in one pass each
      for (int64_t ow = 0; ow < b.Wo; ++ow) o[ow] = (buf[ow] + buf[ow + 1] + buf[ow + 2]) * so[ow];
    } else if (b.kw == 3) {
      for (int64_t ow = 0; ow < b.Wo; ++ow) o[ow] = buf[ow] + buf[ow + 1] + buf[ow + 2];
    } else {
      for (int64_t ow = 0; ow < b.Wo; ++ow) o[ow] = buf[ow];
      for (int64_t j = 1; j < b.kw; ++j)
        for (int64_t ow = 0; ow < b.Wo; ++ow) o[ow] += buf[ow + j];
      if (so)
        for (int64_t ow = 0; ow < b.Wo; ++ow) o[ow] *= so[ow];
    }
  }
}

template <class T>
void box_sum(const Box& b, int64_t planes, const T* in, const T* pre, const T* post, T* out) {
  const int64_t in_plane = b.Hi * b.Wi, out_plane = b.Ho * b.Wo;
#ifdef _OPENMP
#pragma omp parallel if (planes * out_plane * (b.kh + b.kw) > (1 << 15))
#endif
  {
    std::vector<T> buf(static_cast<size_t>(b.buf_len()), T(0));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t pl = 0; pl < planes; ++pl)
      box_sum_plane(b, in + pl * in_plane, pre, post, out + pl * out_plane, buf.data());
  }
}

// 1 / divisor per output, 0 for a window with no input element (both paths give 0 there;
// backward never reads it, since such a window covers no input).
template <class T>
std::vector<T> reciprocal_divisors(const Pool2dShape& s) {
  std::vector<T> inv(static_cast<size_t>(s.Ho * s.Wo));
  for (int64_t oh = 0; oh < s.Ho; ++oh)
    for (int64_t ow = 0; ow < s.Wo; ++ow) {
      const Window win = window(s, oh, ow);
      const bool empty = win.h0 >= win.h1 || win.w0 >= win.w1;
      inv[oh * s.Wo + ow] = empty ? T(0) : T(1) / static_cast<T>(win.divisor);
    }
  return inv;
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
  if (stride1_box(s)) {
    const std::vector<T> inv = reciprocal_divisors<T>(s);
    box_sum<T>({s.H, s.W, s.Ho, s.Wo, s.kh, s.kw, s.ph, s.pw}, planes, x, nullptr, inv.data(), y);
    return;
  }
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
  if (stride1_box(s)) {
    // The transposed window: see the header comment.
    const std::vector<T> inv = reciprocal_divisors<T>(s);
    box_sum<T>({s.Ho, s.Wo, s.H, s.W, s.kh, s.kw, s.kh - 1 - s.ph, s.kw - 1 - s.pw}, planes, dy,
               inv.data(), nullptr, dx);
    return;
  }
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
