// Tests for the stride-1 fast path of kernels/cpu/pool (PoolFormer's 3x3 / pad 1 token mixer
// and its relatives): forward and backward against PyTorch's avg_pool2d written as a
// naive loop over windows in double (naive_pool.h), for every small plane size and the borders
// they make.
// Outputs are poisoned with NaN first, so an element the kernel forgets to write fails.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "kernels/cpu/pool.h"
#include "naive_pool.h"

using namespace peft::kernels::cpu;
using Vec = std::vector<double>;

namespace {

// Values exactly representable in float, so the float runs see the same inputs as the double
// reference and differ from it by their own rounding only.
Vec uniform(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  Vec v(static_cast<size_t>(n));
  for (auto& e : v) e = static_cast<float>(dist(gen));
  return v;
}

// Every |got - ref| <= atol + rtol * |ref|; NaN (an unwritten element) fails. Reports the first
// element that is not close, with its position.
template <class T>
void expect_close(const Vec& ref, const std::vector<T>& got, double atol, double rtol, const char* what) {
  REQUIRE(ref.size() == got.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    if (!(std::fabs(g - ref[i]) <= atol + rtol * std::fabs(ref[i]))) {
      INFO(what << " element " << i << " of " << ref.size() << ": got " << g << ", expected " << ref[i]);
      CHECK(false);
      return;
    }
  }
}

template <class T>
void check_pool(const Pool2dShape& s, const Vec& x, const Vec& dy, const Vec& y_ref, const Vec& dx_ref,
                double atol, double rtol) {
  const std::vector<T> tx(x.begin(), x.end()), tdy(dy.begin(), dy.end());
  std::vector<T> y(y_ref.size(), std::numeric_limits<T>::quiet_NaN());
  std::vector<T> dx(x.size(), std::numeric_limits<T>::quiet_NaN());
  avg_pool2d_forward<T>(s, tx.data(), y.data());
  avg_pool2d_backward<T>(s, tdy.data(), dx.data());
  expect_close(y_ref, y, atol, rtol, "forward");
  expect_close(dx_ref, dx, atol, rtol, "backward");
}

struct Kernel { int64_t kh, kw, ph, pw; };

void run_cases(const std::vector<int64_t>& sizes, const std::vector<Kernel>& kernels, int64_t N, int64_t C) {
  uint32_t seed = 1;
  for (const Kernel& k : kernels)
    for (int64_t H : sizes)
      for (int64_t W : sizes)
        for (bool cip : {false, true})
          for (bool ceil_mode : {false, true}) {
            const Pool2dShape s = pool2d_shape(N, C, H, W, k.kh, k.kw, 1, 1, k.ph, k.pw, ceil_mode, cip);
            if (s.Ho <= 0 || s.Wo <= 0) continue;  // avg_pool2d refuses these
            std::ostringstream what;
            what << "H " << H << " W " << W << " k " << k.kh << "x" << k.kw << " pad " << k.ph << "x" << k.pw
                 << " ceil " << ceil_mode << " count_include_pad " << cip;
            INFO(what.str());
            const Vec x = uniform(N * C * H * W, seed++), dy = uniform(N * C * s.Ho * s.Wo, seed++);
            Vec y_ref, dx_ref;
            peft::testing::naive_avg_pool(s, x, dy, y_ref, dx_ref);
            check_pool<double>(s, x, dy, y_ref, dx_ref, 1e-14, 1e-13);
            // Float sums of at most 25 terms in (-1, 1), each rounding at most 2^-20 or so.
            check_pool<float>(s, x, dy, y_ref, dx_ref, 1e-6, 1e-6);
          }
}

}  // namespace

TEST_CASE("stride-1 avg_pool2d (PoolFormer's 3x3 pad 1) matches PyTorch's windows at every border",
          "[kernels][cpu][pool]") {
  run_cases({1, 2, 3, 5, 7, 56}, {{3, 3, 1, 1}}, 1, 2);
}

TEST_CASE("stride-1 avg_pool2d with even, larger, unpadded and non-square kernels matches PyTorch",
          "[kernels][cpu][pool]") {
  run_cases({1, 2, 3, 5, 7, 56},
            {{2, 2, 0, 0}, {2, 2, 1, 1}, {5, 5, 2, 2}, {3, 3, 0, 0}, {1, 1, 0, 0}, {3, 2, 1, 0},
             {2, 5, 1, 1}, {4, 4, 2, 1}},
            1, 2);
}

TEST_CASE("stride-1 avg_pool2d over many planes (the OpenMP split) matches PyTorch", "[kernels][cpu][pool]") {
  run_cases({7, 56}, {{3, 3, 1, 1}}, 2, 9);
}

TEST_CASE("avg_pool2d with stride 1 on one axis only still matches PyTorch", "[kernels][cpu][pool]") {
  // Mixed strides take the generic loop; pinned so a widened fast-path condition is caught.
  for (bool cip : {false, true}) {
    const Pool2dShape s = pool2d_shape(2, 3, 9, 8, 3, 3, 1, 2, 1, 1, true, cip);
    const Vec x = uniform(s.N * s.C * s.H * s.W, 7), dy = uniform(s.N * s.C * s.Ho * s.Wo, 8);
    Vec y_ref, dx_ref;
    peft::testing::naive_avg_pool(s, x, dy, y_ref, dx_ref);
    check_pool<double>(s, x, dy, y_ref, dx_ref, 1e-14, 1e-13);
    check_pool<float>(s, x, dy, y_ref, dx_ref, 1e-6, 1e-6);
  }
}
