// Branch-free float exp / erfc / GELU (erf form) for the CPU elementwise kernels. Every
// function is straight-line code with bit-mask selects instead of branches, so GCC vectorises
// a `#pragma omp simd` loop that calls them (AVX2 with -march=native, SSE2 otherwise); called
// one element at a time the same code gives the same values up to FMA contraction.
//
// Accuracy design: GELU's negative tail is 0.5*x*erfc(|x|/√2), a tiny number that must keep
// its *relative* accuracy, so it is never formed as 1 + erf (which cancels). erfc(z) is
// t g(t) exp(-z²) with a polynomial g (normal_tail). Rounding z² = x²/2 in float would cost
// ~z²·6e-8 relative (5e-6 at z = 9), so -x²/2 is carried as hi + lo with hi exact and fed to
// an exp that takes the pair; the same exp serves the normal pdf in the backward. Results
// whose exp factor would be subnormal (x below about -13.2) are flushed to 0; |x| is clamped
// to 14, past which GELU is x (or -0) and its derivative 1 (or 0) to float precision, so
// ±inf give the limits. Measured over every float in [-14, 14] against a double erfc
// reference: GELU within 3.8e-7 relative, GELU' within 3.3e-7 of |Φ(x)| + |xφ(x)| (its two
// terms; it crosses 0 near x = -0.75), with or without FMA.
#pragma once

#include <cstdint>
#include <cstring>

// Forced inline: a call left in a `omp simd` loop (GCC declines gelu_erf_grad by its own size
// estimate) stops the vectoriser.
#if defined(__GNUC__)
#define PEFT_FAST_MATH_INLINE inline __attribute__((always_inline))
#else
#define PEFT_FAST_MATH_INLINE inline
#endif

namespace peft::kernels::cpu::fast_math {

PEFT_FAST_MATH_INLINE uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
PEFT_FAST_MATH_INLINE float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// x keeping its top 12 significant bits, so hi*hi is exact in float and x - hi is exact.
PEFT_FAST_MATH_INLINE float split_hi(float x) { return float_of(bits_of(x) & 0xFFFFF000u); }

// Branch-free select on the bits. Written as `c ? a : b` on floats, GCC's jump threading
// copies the code after a clamp into per-case paths, and the vectoriser then gives up
// ("control flow in loop"); masks keep the loop body one basic block.
PEFT_FAST_MATH_INLINE float select(bool c, float a, float b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return float_of((bits_of(a) & m) | (bits_of(b) & ~m));
}

// min(|x|, hi) for hi >= 0 as an unsigned min of the bit patterns (ordered like the values
// for non-negative floats); NaN, whose pattern is above inf's, also gives hi.
PEFT_FAST_MATH_INLINE float abs_min(float x, float hi) {
  const uint32_t a = bits_of(x) & 0x7FFFFFFFu;
  const uint32_t h = bits_of(hi);
  return float_of(a < h ? a : h);
}

PEFT_FAST_MATH_INLINE bool is_nan(float x) { return (bits_of(x) & 0x7FFFFFFFu) > 0x7F800000u; }

// exp(hi + lo) = (1 + q) * scale for hi + lo <= 88, with scale = 0 where hi + lo < -87.3 (the
// result would be subnormal). Kept in two parts so a caller forms m*exp as (m + m*q)*scale:
// one rounding, then an exact power-of-two scaling, instead of rounding 1 + q and then the
// product. Cody–Waite: n = round((hi + lo)/ln2), r = hi - n*ln2_hi + lo - n*ln2_lo. ln2_hi
// has 9 significant bits, so n*ln2_hi is exact, and so is hi - n*ln2_hi when hi is the square
// of a 12-bit number; lo then enters r at full precision instead of being rounded into a large
// hi + lo (which would cost |hi + lo| * 6e-8 relative). Results come back through references:
// clang returns a two-float struct packed in one vector register, which its loop vectoriser
// then refuses ("instruction return type cannot be vectorized").
struct ExpParts {
  float q;
  float scale;
};

PEFT_FAST_MATH_INLINE void exp_parts(float hi, float lo, ExpParts& e) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;     // 355/512
  constexpr float kLn2Lo = -2.12194440e-4f;  // ln2 - kLn2Hi
  // Adding 1.5*2^23 rounds to an integer held in the low mantissa bits, without a
  // float->int conversion (undefined for NaN / out-of-range inputs).
  constexpr float kShifter = 12582912.0f;    // 0x1.8p23, bits 0x4B400000
  const float s = hi + lo;
  float kd = s * kLog2e + kShifter;
  const uint32_t kbits = bits_of(kd);
  kd -= kShifter;
  float r = hi - kd * kLn2Hi;
  r = r + lo;
  r = r - kd * kLn2Lo;
  // exp(r) - 1 on |r| <= ~0.35 (Cephes expf polynomial).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  e.q = p * r * r + r;
  // 2^n built in the exponent field; unsigned arithmetic, so an out-of-range n only yields a
  // value that the select discards.
  const float scale = float_of((kbits - 0x4B400000u + 127u) << 23);
  e.scale = select(s < -87.3f, 0.0f, scale);
}

// m * exp(hi + lo) from exp_parts. m + m*q is rounded once; the power-of-two scaling after it
// is exact unless the result is subnormal.
PEFT_FAST_MATH_INLINE float times_exp(float m, const ExpParts& e) { return (m + m * e.q) * e.scale; }

// Φ(-|x|) = erfc(|x|/√2)/2 = t g(t) exp(-x²/2) / 2, t = 1/(1 + k|x|), k = 3/14 (so t is in
// [0.25, 1] for |x| <= 14). t g(t) = erfc(z) exp(z²) is smooth and in [0.05, 1], so a plain
// polynomial for g has no cancellation, unlike exp-of-a-polynomial forms (Numerical Recipes'
// erfcc sums terms ~1 to ~0 inside the exp: ~3e-7 lost in float near x = 0). g is a relative-
// minimax fit in u = 2t - 1.25 (Lawson-weighted least squares in long double; coefficients
// rounded to float one at a time from c0, the rest refitted): 2.5e-8 with these coefficients.
struct NormalTail {
  float t_g;   // t g(t) = erfc(|x|/√2) exp(x²/2)
  ExpParts e;  // exp(-x²/2)
};

PEFT_FAST_MATH_INLINE void normal_tail(float ax, NormalTail& n) {
  const float kax = ax * (3.0f / 14.0f);
  const float w = 1.0f + kax;
  const float t = 1.0f / w;
  // g's slope turns an error in u into up to ~3x as much in g. Near t = 1, 2t - 1.25 would
  // inherit t's rounding (and 1 + kax's, which drops low bits of a small |x|), so u comes
  // from 1 - t = kax*t there, whose error shrinks with |x|.
  const float u_head = 0.75f - 2.0f * (kax * t);
  const float u_tail = 2.0f * t - 1.25f;
  const float u = select(t > 0.5f, u_head, u_tail);
  float g = 5.764653906e-05f;
  g = g * u - 4.412231210e-04f;
  g = g * u - 1.405704301e-03f;
  g = g * u + 2.214289503e-03f;
  g = g * u + 2.395912260e-02f;
  g = g * u + 8.258040994e-02f;
  g = g * u + 1.859032214e-01f;
  g = g * u + 3.108207583e-01f;
  g = g * u + 4.035454988e-01f;
  g = g * u + 4.120950699e-01f;
  const float xh = split_hi(ax);
  n.t_g = g / w;  // not t*g: one rounding fewer
  exp_parts(-0.5f * (xh * xh), -0.5f * ((ax - xh) * (ax + xh)), n.e);
}

// GELU(x) = x Φ(x). Past |x| = 14 the result is x (or -0) to float precision; NaN and +inf
// propagate through the x factor of the positive branch.
PEFT_FAST_MATH_INLINE float gelu_erf(float x) {
  const float ax = abs_min(x, 14.0f);
  NormalTail n;
  normal_tail(ax, n);
  const float pos = x * (1.0f - times_exp(0.5f * n.t_g, n.e));
  const float neg = times_exp(-0.5f * ax * n.t_g, n.e);
  return select(x < 0.0f, neg, pos);
}

// GELU'(x) = Φ(x) + x φ(x); φ shares Φ's exp(-x²/2). ±inf give the limits 1 and 0 (not
// inf*0 = NaN), NaN stays NaN.
PEFT_FAST_MATH_INLINE float gelu_erf_grad(float x) {
  constexpr float kInvSqrt2Pi = 0.39894228040143268f;
  const float ax = abs_min(x, 14.0f);
  NormalTail n;
  normal_tail(ax, n);
  const float tail = times_exp(0.5f * n.t_g, n.e);  // Φ(-|x|)
  const bool neg = x < 0.0f;
  const float cdf = select(neg, tail, 1.0f - tail);
  const float x_pdf = times_exp(select(neg, -ax, ax) * kInvSqrt2Pi, n.e);
  return select(is_nan(x), x, cdf + x_pdf);
}

}  // namespace peft::kernels::cpu::fast_math
