// Tests for the float GELU (erf form) kernels in kernels/cpu/elementwise.cpp, which run the
// branch-free fast_math.h code: forward and backward against a double reference built on
// std::erfc (tail-accurate, unlike 1 + erf), special values, and strided / broadcast operands,
// which take the per-element path instead of the vectorised unit-stride rows.
//
// Bounds. Forward: |got - ref| <= 4e-7 |ref| + FLT_MIN. 4e-7 is 3.3 to 6.7 float ulps (an ulp
// is 6e-8 to 1.2e-7 of the value): the erfc fit is 2.5e-8, and each of the ~6 roundings on the
// path (t, the polynomial, exp, the products) adds up to half an ulp; the measured worst case
// over every float in [-14, 14] is 3.8e-7, with or without FMA. FLT_MIN: the exp flushes
// results that would be subnormal to 0.
// Backward: gelu'(x) = Φ(x) + xφ(x) crosses 0 near x = -0.7518, where no relative bound holds,
// so the error is measured against |Φ(x)| + |xφ(x)|: <= 4e-7 (|Φ| + |xφ|) + 1e-37. 1e-37:
// φ flushes to 0 below FLT_MIN, and |x|φ(x) there is at most 14 * 0.4 * FLT_MIN = 6.6e-38.
// Measured worst case over every float in [-14, 14]: 3.3e-7.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/elementwise.h"

using namespace peft::kernels::cpu;

namespace {

constexpr double kRel = 4e-7;
constexpr double kFwdAbs = std::numeric_limits<float>::min();
constexpr double kBwdAbs = 1e-37;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

double phi_tail(double ax) { return 0.5 * std::erfc(ax / std::sqrt(2.0)); }  // Φ(-|x|)
double cdf_ref(double x) { return x >= 0 ? 1 - phi_tail(x) : phi_tail(-x); }
double gelu_ref(double x) { return x >= 0 ? x * (1 - phi_tail(x)) : x * phi_tail(-x); }
double x_pdf_ref(double x) { return x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }

std::vector<float> gelu_dense(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  const Dims shape{static_cast<int64_t>(x.size())}, st{1};
  unary<float>(UnaryOp::GeluErf, shape, out.data(), st, x.data(), st);
  return out;
}

// g * gelu'(x) for dense g and x.
std::vector<float> gelu_grad_dense(const std::vector<float>& g, const std::vector<float>& x) {
  std::vector<float> out(x.size());
  const Dims shape{static_cast<int64_t>(x.size())}, st{1};
  binary<float>(BinaryOp::GeluErfBackward, shape, out.data(), st, g.data(), st, x.data(), st);
  return out;
}

// A dense sweep of [-12, 12] (2^21 + 1 points, so the OpenMP chunks run too).
std::vector<float> sweep() {
  const int64_t n = (int64_t{1} << 21) + 1;
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = static_cast<float>(-12.0 + 24.0 * i / (n - 1));
  return x;
}

// Values that probe tiny and subnormal inputs, both tails, the flush region and past the clamp.
std::vector<float> specials() {
  return {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-38f, -1e-38f, 1e-45f, -1e-45f, 1e-7f, -1e-7f, 0.75179f,
          -0.75179f, 1.0f, -1.0f, 5.5f, -5.5f, 13.0f, -13.0f, 13.3f, -13.3f, 14.0f, -14.0f, 20.0f,
          -20.0f, 1e4f, -1e4f, 3e38f, -3e38f};
}

}  // namespace

TEST_CASE("float gelu (erf) matches a double erfc reference to 4e-7 relative", "[kernels][cpu][gelu]") {
  std::vector<float> x = sweep();
  for (float s : specials()) x.push_back(s);
  const std::vector<float> y = gelu_dense(x);
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = gelu_ref(x[i]), err = std::fabs(y[i] - ref);
    if (std::fabs(ref) > kFwdAbs) worst = std::max(worst, err / std::fabs(ref));
    if (!(err <= kRel * std::fabs(ref) + kFwdAbs)) {
      INFO(std::setprecision(9) << "x = " << x[i] << ": got " << y[i] << ", expected " << ref);
      CHECK(false);
      return;
    }
  }
  INFO("max relative error " << worst);
  CHECK(worst <= kRel);
}

TEST_CASE("float gelu (erf) backward matches a double reference to 4e-7 of |cdf| + |x pdf|",
          "[kernels][cpu][gelu]") {
  std::vector<float> x = sweep();
  for (float s : specials()) x.push_back(s);
  const std::vector<float> ones(x.size(), 1.0f);
  const std::vector<float> d = gelu_grad_dense(ones, x);
  for (size_t i = 0; i < x.size(); ++i) {
    const double cdf = cdf_ref(x[i]), xp = x_pdf_ref(x[i]);
    if (!(std::fabs(d[i] - (cdf + xp)) <= kRel * (std::fabs(cdf) + std::fabs(xp)) + kBwdAbs)) {
      INFO(std::setprecision(9) << "x = " << x[i] << ": got " << d[i] << ", expected " << cdf + xp);
      CHECK(false);
      return;
    }
  }
  // The incoming gradient scales the result: one more rounding.
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
  std::vector<float> g(x.size());
  for (auto& v : g) v = dist(gen);
  const std::vector<float> dg = gelu_grad_dense(g, x);
  for (size_t i = 0; i < x.size(); ++i) {
    if (!(dg[i] == g[i] * d[i])) {
      INFO(std::setprecision(9) << "x = " << x[i] << ", g = " << g[i] << ": got " << dg[i] << ", expected "
                                << g[i] * d[i]);
      CHECK(false);
      return;
    }
  }
  SUCCEED();
}

TEST_CASE("float gelu (erf) gives the limits at infinities and propagates NaN", "[kernels][cpu][gelu]") {
  const std::vector<float> x{kInf, -kInf, kNaN, 0.0f, -0.0f, 1e4f, -1e4f, 1e-30f};
  const std::vector<float> y = gelu_dense(x);
  CHECK(y[0] == kInf);
  CHECK(y[1] == 0.0f);  // -0 or +0
  CHECK(std::isnan(y[2]));
  CHECK(y[3] == 0.0f);
  CHECK(y[4] == 0.0f);
  CHECK(y[5] == 1e4f);
  CHECK(y[6] == 0.0f);
  CHECK(y[7] == 0.5e-30f);
  const std::vector<float> d = gelu_grad_dense(std::vector<float>(x.size(), 1.0f), x);
  CHECK(d[0] == 1.0f);
  CHECK(d[1] == 0.0f);
  CHECK(std::isnan(d[2]));
  CHECK(d[3] == 0.5f);
  CHECK(d[4] == 0.5f);
  CHECK(d[5] == 1.0f);
  CHECK(d[6] == 0.0f);
  CHECK(d[7] == 0.5f);
}

TEST_CASE("float gelu (erf) on strided and broadcast operands equals the dense result", "[kernels][cpu][gelu]") {
  // x: a (rows, cols) view with the inner dim strided by 3 inside a bigger buffer, so no row
  // has unit stride; out is written transposed (column-major).
  const int64_t rows = 37, cols = 45;
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> dist(-9.0f, 9.0f);
  std::vector<float> buf(static_cast<size_t>(rows * cols * 3));
  for (auto& v : buf) v = dist(gen);
  std::vector<float> dense_x(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < dense_x.size(); ++i) dense_x[i] = buf[i * 3];
  const std::vector<float> want = gelu_dense(dense_x);

  const Dims shape{rows, cols}, xs{cols * 3, 3}, os{1, rows};
  std::vector<float> out(static_cast<size_t>(rows * cols));
  unary<float>(UnaryOp::GeluErf, shape, out.data(), os, buf.data(), xs);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      // Vectorised and scalar code may fuse multiply-adds differently: allow an ulp or so.
      const float got = out[static_cast<size_t>(c * rows + r)], w = want[static_cast<size_t>(r * cols + c)];
      REQUIRE(std::fabs(got - w) <= 2.5e-7f * std::fabs(w));
    }

  // Backward with the incoming gradient broadcast along the rows (stride 0) and x strided.
  std::vector<float> g(static_cast<size_t>(cols));
  for (auto& v : g) v = dist(gen);
  std::vector<float> dense_g(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dense_g[static_cast<size_t>(r * cols + c)] = g[static_cast<size_t>(c)];
  const std::vector<float> want_d = gelu_grad_dense(dense_g, dense_x);
  std::vector<float> out_d(static_cast<size_t>(rows * cols));
  binary<float>(BinaryOp::GeluErfBackward, shape, out_d.data(), Dims{cols, 1}, g.data(), Dims{0, 1}, buf.data(), xs);
  for (size_t i = 0; i < out_d.size(); ++i) {
    const double x = dense_x[i], scale = std::fabs(dense_g[i]) * (std::fabs(cdf_ref(x)) + std::fabs(x_pdf_ref(x)));
    REQUIRE(std::fabs(out_d[i] - want_d[i]) <= 2.5e-7 * scale);
  }
}

TEST_CASE("double gelu (erf) keeps std::erf", "[kernels][cpu][gelu]") {
  std::vector<double> x;
  for (int i = -400; i <= 400; ++i) x.push_back(i / 100.0);
  std::vector<double> y(x.size()), d(x.size());
  const std::vector<double> ones(x.size(), 1.0);
  const Dims shape{static_cast<int64_t>(x.size())}, st{1};
  unary<double>(UnaryOp::GeluErf, shape, y.data(), st, x.data(), st);
  binary<double>(BinaryOp::GeluErfBackward, shape, d.data(), st, ones.data(), st, x.data(), st);
  for (size_t i = 0; i < x.size(); ++i) {
    CHECK(y[i] == Approx(gelu_ref(x[i])).epsilon(1e-12).margin(1e-15));
    CHECK(d[i] == Approx(cdf_ref(x[i]) + x_pdf_ref(x[i])).epsilon(1e-12).margin(1e-15));
  }
}
