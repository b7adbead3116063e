// Tests for kernels/cpu: gemm, conv2d, avg_pool2d, group/layer norm, softmax, embedding.
// Each kernel is compared with a naive loop written here in double (float runs are checked
// against the same double reference), and backward passes with naive backward loops or
// central finite differences of L = sum(y * r) in double.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/pool.h"
#include "naive_pool.h"
#include "kernels/cpu/softmax.h"

using namespace peft::kernels::cpu;
using Vec = std::vector<double>;
using Idx = std::vector<size_t>;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

Vec uniform(int64_t n, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec v(static_cast<size_t>(n));
  for (auto& e : v) e = dist(gen);
  return v;
}

template <class T>
std::vector<T> cast(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Every |got - ref| <= atol + rtol * |ref|; reports the first element that is not.
template <class T>
void expect_close(const Vec& ref, const std::vector<T>& got, double atol, double rtol) {
  REQUIRE(ref.size() == got.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    if (!(std::fabs(g - ref[i]) <= atol + rtol * std::fabs(ref[i]))) {
      INFO("element " << i << " of " << ref.size() << ": got " << g << ", expected " << ref[i]);
      CHECK(false);
      return;
    }
  }
  SUCCEED();
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

Idx all_or_sample(size_t n, size_t count, uint32_t seed) {
  Idx idx;
  if (count == 0 || count >= n) {
    for (size_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  std::mt19937 gen(seed);
  std::uniform_int_distribution<size_t> dist(0, n - 1);
  for (size_t k = 0; k < count; ++k) idx.push_back(dist(gen));
  return idx;
}

// Compares the analytic gradient g of loss() w.r.t. v with central differences at idx.
void expect_grad(const Vec& g, Vec& v, const std::function<double()>& loss, const Idx& idx,
                 double tol, double h = 1e-5) {
  Vec fd, an;
  for (size_t i : idx) {
    const double keep = v[i];
    v[i] = keep + h;
    const double lp = loss();
    v[i] = keep - h;
    const double lm = loss();
    v[i] = keep;
    fd.push_back((lp - lm) / (2 * h));
    an.push_back(g[i]);
  }
  loss();  // leave the outputs of the unperturbed point behind
  expect_close(fd, an, tol, tol);
}

}  // namespace

// ------------------------------------------------------------------------------------ gemm

namespace {

// C = alpha * op(A) op(B) + beta * C with the storage conventions of gemm().
void naive_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const Vec& A,
                int64_t lda, const Vec& B, int64_t ldb, double beta, Vec& C, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (ta ? A[k * lda + m] : A[m * lda + k]) * (tb ? B[n * ldb + k] : B[k * ldb + n]);
      double& c = C[m * ldc + n];
      c = alpha * s + (beta == 0 ? 0.0 : beta * c);
    }
}

template <class T>
void check_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, double beta,
                double tol) {
  // Padded leading dimensions exercise the row strides.
  const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
  const Vec A = uniform((ta ? K : M) * lda, 1), B = uniform((tb ? N : K) * ldb, 2);
  Vec C = beta == 0 ? Vec(static_cast<size_t>(M * ldc), kNaN) : uniform(M * ldc, 3);
  std::vector<T> a = cast<T>(A), b = cast<T>(B), c = cast<T>(C);
  gemm<T>(ta, tb, M, N, K, static_cast<T>(alpha), a.data(), lda, b.data(), ldb,
          static_cast<T>(beta), c.data(), ldc);
  naive_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  // The padding column of C (NaN or random) must be left exactly as it was.
  Vec ref;
  std::vector<T> got;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      ref.push_back(C[m * ldc + n]);
      got.push_back(c[m * ldc + n]);
    }
    const double pad = static_cast<double>(c[m * ldc + N]);
    CHECK((std::isnan(C[m * ldc + N]) ? std::isnan(pad) : pad == static_cast<double>(T(C[m * ldc + N]))));
  }
  expect_close(ref, got, tol, tol);
}

}  // namespace

TEST_CASE("gemm matches a naive product for every transpose combination", "[kernels][cpu]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (double beta : {0.0, 0.5, 1.0}) {
        INFO("trans_a " << ta << " trans_b " << tb << " beta " << beta << " (beta 0: C is NaN)");
        check_gemm<double>(ta, tb, 5, 7, 4, 1.5, beta, 1e-12);
        check_gemm<double>(ta, tb, 67, 45, 130, -0.75, beta, 1e-11);
        check_gemm<float>(ta, tb, 67, 45, 130, -0.75, beta, 1e-4);
        // Big enough for the BLAS path and for splitting C between threads by rows (M >= N)
        // and by columns (N > M), with tails (the blocks are not equal).
        check_gemm<float>(ta, tb, 201, 150, 70, 1.25, beta, 1e-4);
        check_gemm<double>(ta, tb, 150, 263, 70, 1.25, beta, 1e-11);
      }
}

TEST_CASE("gemm with K = 0 or alpha = 0 scales C and never reads A or B", "[kernels][cpu]") {
  std::vector<double> c(6, kNaN);
  gemm<double>(false, false, 2, 3, 0, 1.0, nullptr, 0, nullptr, 3, 0.0, c.data(), 3);
  CHECK(c == std::vector<double>(6, 0.0));
  std::vector<double> d = {1, 2, 3, 4, 5, 6};
  gemm<double>(true, true, 2, 3, 4, 0.0, nullptr, 2, nullptr, 4, 2.0, d.data(), 3);
  CHECK(d == std::vector<double>({2, 4, 6, 8, 10, 12}));
}

// ---------------------------------------------------------------------------------- conv2d

namespace {

// Calls f(y index, x index, w index) for every weight tap that lands inside the input.
template <class F>
void for_each_tap(const Conv2dShape& s, F f) {
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t oh = 0; oh < s.Ho; ++oh)
        for (int64_t ow = 0; ow < s.Wo; ++ow)
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < s.kh; ++i)
              for (int64_t j = 0; j < s.kw; ++j) {
                const int64_t ih = oh * s.sh - s.ph + i * s.dh, iw = ow * s.sw - s.pw + j * s.dw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                f(((n * s.O + o) * s.Ho + oh) * s.Wo + ow,
                  ((n * s.C + (o / Og) * Cg + c) * s.H + ih) * s.W + iw,
                  ((o * Cg + c) * s.kh + i) * s.kw + j);
              }
}

struct ConvCase {
  const char* name;
  int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups;
  bool bias;
};

const ConvCase kConvCases[] = {
    {"3x2 kernel, stride (2,1), pad (1,0), dilation (1,2)", 2, 3, 7, 6, 4, 3, 2, 2, 1, 1, 0, 1, 2, 1, true},
    {"groups 2, pad (2,1), dilation (2,1)", 3, 4, 5, 5, 6, 2, 3, 1, 1, 2, 1, 2, 1, 2, false},
    {"depthwise, multiplier 2, stride 2", 2, 4, 8, 7, 8, 3, 3, 2, 2, 1, 1, 1, 1, 4, true},
    {"1x1 direct path", 3, 5, 4, 6, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},
    {"1x1 direct path, groups 3", 2, 6, 3, 5, 9, 1, 1, 1, 1, 0, 0, 1, 1, 3, false},
    {"1x1 stride 2 (im2col path)", 2, 3, 6, 5, 4, 1, 1, 2, 2, 0, 0, 1, 1, 1, true},
    {"1x1 with padding (im2col path)", 1, 3, 4, 4, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, true},
    {"batch 9 (dw reduced across threads)", 9, 6, 9, 8, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},
    {"batch 1, groups 1 (serial, Eigen threads)", 1, 8, 12, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
};

Conv2dShape shape_of(const ConvCase& c) {
  return conv2d_shape(c.N, c.C, c.H, c.W, c.O, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw,
                      c.groups);
}

template <class T>
void check_conv(const ConvCase& cc, double tol) {
  const Conv2dShape s = shape_of(cc);
  REQUIRE(s.Ho > 0);
  REQUIRE(s.Wo > 0);
  const Vec x = uniform(s.N * s.C * s.H * s.W, 11);
  const Vec w = uniform(s.O * (s.C / s.groups) * s.kh * s.kw, 12);
  const Vec b = uniform(s.O, 13), dy = uniform(s.N * s.O * s.Ho * s.Wo, 14);
  Vec y_ref(dy.size(), 0.0), dx_ref(x.size(), 0.0), dw_ref(w.size(), 0.0), db_ref(s.O, 0.0);
  const int64_t P = s.Ho * s.Wo;
  for (size_t yi = 0; yi < dy.size(); ++yi) {
    const int64_t o = (static_cast<int64_t>(yi) / P) % s.O;
    if (cc.bias) y_ref[yi] = b[o];
    db_ref[o] += dy[yi];
  }
  for_each_tap(s, [&](int64_t yi, int64_t xi, int64_t wi) {
    y_ref[yi] += x[xi] * w[wi];
    dx_ref[xi] += w[wi] * dy[yi];
    dw_ref[wi] += x[xi] * dy[yi];
  });

  std::vector<T> tx = cast<T>(x), tw = cast<T>(w), tb = cast<T>(b), tdy = cast<T>(dy);
  std::vector<T> y(y_ref.size(), T(kNaN));
  conv2d_forward<T>(s, tx.data(), tw.data(), cc.bias ? tb.data() : nullptr, y.data());
  expect_close(y_ref, y, tol, tol);

  // Outputs start as NaN: they must be written with =, not accumulated.
  std::vector<T> dx(x.size(), T(kNaN)), dw(w.size(), T(kNaN)), db(b.size(), T(kNaN));
  conv2d_backward<T>(s, tx.data(), tw.data(), tdy.data(), dx.data(), dw.data(), db.data());
  expect_close(dx_ref, dx, tol, tol);
  expect_close(dw_ref, dw, tol, tol);
  expect_close(db_ref, db, tol, tol);

  // Each gradient alone (the others null; x or w unused then) gives the same values.
  std::vector<T> dx2(x.size(), T(kNaN)), dw2(w.size(), T(kNaN));
  conv2d_backward<T>(s, nullptr, tw.data(), tdy.data(), dx2.data(), nullptr, nullptr);
  conv2d_backward<T>(s, tx.data(), nullptr, tdy.data(), nullptr, dw2.data(), nullptr);
  expect_close(dx_ref, dx2, tol, tol);
  expect_close(dw_ref, dw2, tol, tol);
}

}  // namespace

TEST_CASE("conv2d_shape computes PyTorch's output size", "[kernels][cpu]") {
  Conv2dShape s = conv2d_shape(1, 3, 32, 17, 8, 3, 5, 2, 3, 1, 2, 1, 2, 1);
  CHECK(s.Ho == 16);  // (32 + 2 - 2 - 1) / 2 + 1
  CHECK(s.Wo == 5);   // (17 + 4 - 8 - 1) / 3 + 1
  CHECK(conv2d_shape(1, 1, 2, 2, 1, 5, 5, 1, 1, 0, 0, 1, 1, 1).Ho == 0);  // kernel > input
}

TEST_CASE("conv2d forward and backward match naive loops", "[kernels][cpu]") {
  for (const ConvCase& cc : kConvCases) {
    INFO(cc.name);
    check_conv<double>(cc, 1e-10);
    check_conv<float>(cc, 1e-4);
  }
}

TEST_CASE("conv2d backward matches finite differences", "[kernels][cpu]") {
  for (int k : {0, 1}) {
    INFO(kConvCases[k].name);
    const Conv2dShape s = shape_of(kConvCases[k]);
    Vec x = uniform(s.N * s.C * s.H * s.W, 21);
    Vec w = uniform(s.O * (s.C / s.groups) * s.kh * s.kw, 22), b = uniform(s.O, 23);
    const Vec r = uniform(s.N * s.O * s.Ho * s.Wo, 24);
    Vec y(r.size());
    auto loss = [&] {
      conv2d_forward<double>(s, x.data(), w.data(), b.data(), y.data());
      return dot(y, r);
    };
    Vec dx(x.size()), dw(w.size()), db(b.size());
    conv2d_backward<double>(s, x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data());
    expect_grad(dx, x, loss, all_or_sample(x.size(), 0, 0), 1e-8);
    expect_grad(dw, w, loss, all_or_sample(w.size(), 0, 0), 1e-8);
    expect_grad(db, b, loss, all_or_sample(b.size(), 0, 0), 1e-8);
  }
}

// ------------------------------------------------------------------------------ avg_pool2d

TEST_CASE("pool2d_shape follows PyTorch's ceil_mode rule", "[kernels][cpu]") {
  CHECK(pool2d_shape(1, 1, 6, 6, 3, 3, 2, 2, 0, 0, false, true).Ho == 2);
  CHECK(pool2d_shape(1, 1, 6, 6, 3, 3, 2, 2, 0, 0, true, true).Ho == 3);
  // ceil gives 3, but the third window would start in the right padding: dropped.
  CHECK(pool2d_shape(1, 1, 5, 5, 3, 3, 3, 3, 1, 1, true, true).Ho == 2);
  CHECK(pool2d_shape(1, 1, 5, 5, 3, 3, 3, 3, 1, 1, false, true).Ho == 2);
  const Pool2dShape s = pool2d_shape(1, 1, 7, 4, 2, 3, 2, 1, 1, 1, true, false);
  CHECK(s.Ho == 4);  // ceil(7 / 2) + 1 = 5, but the fifth window starts at 8 >= 7 + 1
  CHECK(s.Wo == 4);
}

TEST_CASE("avg_pool2d reproduces known PyTorch values", "[kernels][cpu]") {
  // F.avg_pool2d(ones(1,1,3,3), 2, 2, padding=1) == [[.25, .5], [.5, 1]]
  Pool2dShape s = pool2d_shape(1, 1, 3, 3, 2, 2, 2, 2, 1, 1, false, true);
  std::vector<double> x(9, 1.0), y(4);
  avg_pool2d_forward<double>(s, x.data(), y.data());
  CHECK(y == std::vector<double>({0.25, 0.5, 0.5, 1.0}));
  // F.avg_pool2d(ones(1,1,4,4), 3, 2, ceil_mode=True) is all ones: the overhanging window's
  // divisor is clipped to the padded input even with count_include_pad.
  s = pool2d_shape(1, 1, 4, 4, 3, 3, 2, 2, 0, 0, true, true);
  REQUIRE(s.Ho == 2);
  x.assign(16, 1.0);
  avg_pool2d_forward<double>(s, x.data(), y.data());
  CHECK(y == std::vector<double>(4, 1.0));
}

TEST_CASE("avg_pool2d forward and backward match naive loops", "[kernels][cpu]") {
  struct PoolCase { int64_t N, C, H, W, kh, kw, sh, sw, ph, pw; };
  const PoolCase cases[] = {{2, 3, 7, 6, 3, 2, 2, 1, 1, 1}, {1, 2, 5, 5, 3, 3, 3, 3, 1, 1},
                            {2, 2, 8, 9, 4, 3, 3, 2, 2, 1}, {1, 1, 4, 4, 3, 3, 2, 2, 0, 0},
                            {4, 16, 33, 31, 2, 2, 2, 2, 0, 0}};
  for (const auto& pc : cases)
    for (bool ceil_mode : {false, true})
      for (bool cip : {false, true}) {
        INFO("H " << pc.H << " W " << pc.W << " k " << pc.kh << "x" << pc.kw << " ceil "
                  << ceil_mode << " count_include_pad " << cip);
        const Pool2dShape s = pool2d_shape(pc.N, pc.C, pc.H, pc.W, pc.kh, pc.kw, pc.sh, pc.sw,
                                           pc.ph, pc.pw, ceil_mode, cip);
        REQUIRE(s.Ho > 0);
        const Vec x = uniform(s.N * s.C * s.H * s.W, 31), dy = uniform(s.N * s.C * s.Ho * s.Wo, 32);
        Vec y_ref, dx_ref;
        peft::testing::naive_avg_pool(s, x, dy, y_ref, dx_ref);
        Vec y(y_ref.size(), kNaN), dx(x.size(), kNaN);
        avg_pool2d_forward<double>(s, x.data(), y.data());
        avg_pool2d_backward<double>(s, dy.data(), dx.data());
        expect_close(y_ref, y, 1e-12, 1e-12);
        expect_close(dx_ref, dx, 1e-12, 1e-12);
        std::vector<float> fx = cast<float>(x), fdy = cast<float>(dy);
        std::vector<float> fy(y_ref.size()), fdx(x.size());
        avg_pool2d_forward<float>(s, fx.data(), fy.data());
        avg_pool2d_backward<float>(s, fdy.data(), fdx.data());
        expect_close(y_ref, fy, 1e-5, 1e-4);
        expect_close(dx_ref, fdx, 1e-5, 1e-4);
      }
}

// ----------------------------------------------------------------------------------- norms

namespace {

// group_norm from its definition; layer_norm over rows of M is the case (N=R, C=M, S=1, G=1).
void naive_group_norm(int64_t N, int64_t C, int64_t S, int64_t G, double eps, const Vec& x,
                      const Vec* w, const Vec* b, Vec& y, Vec& mean, Vec& rstd) {
  const int64_t Cg = C / G, n = Cg * S;
  y.assign(x.size(), 0.0);
  mean.assign(static_cast<size_t>(N * G), 0.0);
  rstd.assign(static_cast<size_t>(N * G), 0.0);
  for (int64_t ng = 0; ng < N * G; ++ng) {
    double m = 0, v = 0;
    for (int64_t k = 0; k < n; ++k) m += x[ng * n + k];
    m /= n;
    for (int64_t k = 0; k < n; ++k) v += (x[ng * n + k] - m) * (x[ng * n + k] - m);
    mean[ng] = m;
    rstd[ng] = 1 / std::sqrt(v / n + eps);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t c = (ng % G) * Cg + k / S;
      y[ng * n + k] = (x[ng * n + k] - m) * rstd[ng] * (w ? (*w)[c] : 1.0) + (b ? (*b)[c] : 0.0);
    }
  }
}

// One norm problem: x (rows, C, S) normalised in G groups (layer_norm: rows, M, 1, 1).
struct NormCase {
  bool layer;
  int64_t N, C, S, G;
  bool affine;
  size_t fd_points;  // 0: every element
};

template <class T>
void run_norm(const NormCase& nc, T eps, const std::vector<T>& x, const std::vector<T>& w,
              const std::vector<T>& b, const std::vector<T>& dy, std::vector<T>& y,
              std::vector<T>& mean, std::vector<T>& rstd, std::vector<T>* dx, std::vector<T>* dw,
              std::vector<T>* db) {
  const T* pw = nc.affine ? w.data() : nullptr;
  const T* pb = nc.affine ? b.data() : nullptr;
  if (nc.layer) {
    layer_norm_forward<T>(nc.N, nc.C, eps, x.data(), pw, pb, y.data(), mean.data(), rstd.data());
  } else {
    group_norm_forward<T>(nc.N, nc.C, nc.S, nc.G, eps, x.data(), pw, pb, y.data(), mean.data(),
                          rstd.data());
  }
  if (!dx) return;
  if (nc.layer) {
    layer_norm_backward<T>(nc.N, nc.C, x.data(), pw, mean.data(), rstd.data(), dy.data(),
                           dx->data(), dw->data(), db->data());
  } else {
    group_norm_backward<T>(nc.N, nc.C, nc.S, nc.G, x.data(), pw, mean.data(), rstd.data(),
                           dy.data(), dx->data(), dw->data(), db->data());
  }
}

void check_norm(const NormCase& nc) {
  INFO((nc.layer ? "layer_norm" : "group_norm") << " N " << nc.N << " C " << nc.C << " S "
       << nc.S << " G " << nc.G << " affine " << nc.affine);
  const double eps = 1e-5;
  const int64_t n = nc.N * nc.C * nc.S;
  Vec x = uniform(n, 41, -2, 3), w = uniform(nc.C, 42, 0.5, 1.5), b = uniform(nc.C, 43);
  const Vec r = uniform(n, 44);
  Vec y_ref, m_ref, rs_ref;
  naive_group_norm(nc.N, nc.C, nc.S, nc.G, eps, x, nc.affine ? &w : nullptr,
                   nc.affine ? &b : nullptr, y_ref, m_ref, rs_ref);
  Vec y(n), mean(m_ref.size()), rstd(m_ref.size());
  Vec dx(n, kNaN), dw(nc.C, kNaN), db(nc.C, kNaN);
  run_norm<double>(nc, eps, x, w, b, r, y, mean, rstd, &dx, &dw, &db);
  expect_close(y_ref, y, 1e-10, 1e-10);
  expect_close(m_ref, mean, 1e-12, 1e-12);
  expect_close(rs_ref, rstd, 1e-10, 1e-10);

  auto loss = [&] {
    run_norm<double>(nc, eps, x, w, b, r, y, mean, rstd, nullptr, nullptr, nullptr);
    return dot(y, r);
  };
  expect_grad(dx, x, loss, all_or_sample(x.size(), nc.fd_points, 45), 1e-7);
  if (nc.affine) {
    expect_grad(dw, w, loss, all_or_sample(w.size(), nc.fd_points, 46), 1e-7);
    expect_grad(db, b, loss, all_or_sample(b.size(), nc.fd_points, 47), 1e-7);
  }

  // float, checked against the double results
  std::vector<float> fx = cast<float>(x), fw = cast<float>(w), fb = cast<float>(b);
  std::vector<float> fr = cast<float>(r), fy(n), fm(mean.size()), frs(mean.size());
  std::vector<float> fdx(n), fdw(nc.C), fdb(nc.C);
  run_norm<float>(nc, 1e-5f, fx, fw, fb, fr, fy, fm, frs, &fdx, &fdw, &fdb);
  expect_close(y_ref, fy, 1e-4, 1e-4);
  expect_close(dx, fdx, 1e-4, 1e-4);
  if (nc.affine) {
    expect_close(dw, fdw, 1e-4, 1e-4);
    expect_close(db, fdb, 1e-4, 1e-4);
  }
}

}  // namespace

TEST_CASE("group_norm and layer_norm match their definition and finite differences",
          "[kernels][cpu]") {
  const NormCase cases[] = {
      {false, 2, 6, 5, 3, true, 0},   {false, 2, 6, 5, 3, false, 0},
      {false, 3, 4, 7, 1, true, 0},   {false, 4, 32, 300, 8, true, 40},  // threaded
      {true, 3, 7, 1, 1, true, 0},    {true, 4, 5, 1, 1, false, 0},
      {true, 64, 600, 1, 1, true, 40},  // several column blocks, threaded
  };
  for (const NormCase& nc : cases) check_norm(nc);
}

TEST_CASE("norm statistics stay accurate for float inputs with a large mean", "[kernels][cpu]") {
  const int64_t M = 4096;
  Vec x = uniform(M, 57, -1, 1);
  for (auto& v : x) v += 1e4;
  std::vector<float> fx = cast<float>(x), fy(M);
  float mean = 0, rstd = 0;
  layer_norm_forward<float>(1, M, 1e-5f, fx.data(), nullptr, nullptr, fy.data(), &mean, &rstd);
  Vec xd(fx.begin(), fx.end()), y_ref, m_ref, rs_ref;
  naive_group_norm(1, M, 1, 1, 1e-5, xd, nullptr, nullptr, y_ref, m_ref, rs_ref);
  CHECK(std::fabs(rstd - rs_ref[0]) <= 1e-4 * rs_ref[0]);
  expect_close(y_ref, fy, 1e-3, 1e-3);
}

// --------------------------------------------------------------------------------- softmax

namespace {

void naive_softmax(int64_t outer, int64_t D, int64_t inner, const Vec& x, Vec& y, bool log) {
  y.assign(x.size(), 0.0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t d) { return (o * D + d) * inner + i; };
      double mx = -INFINITY, sum = 0;
      for (int64_t d = 0; d < D; ++d) mx = std::max(mx, x[at(d)]);
      for (int64_t d = 0; d < D; ++d) sum += std::exp(x[at(d)] - mx);
      for (int64_t d = 0; d < D; ++d)
        y[at(d)] = log ? x[at(d)] - mx - std::log(sum) : std::exp(x[at(d)] - mx) / sum;
    }
}

}  // namespace

TEST_CASE("softmax and log_softmax match naive loops and finite differences", "[kernels][cpu]") {
  struct Shape { int64_t outer, D, inner; };
  const Shape shapes[] = {{3, 5, 1}, {64, 300, 1}, {2, 4, 3}, {2, 6, 300}, {1, 1, 1}, {4, 100, 130}};
  for (const Shape& sh : shapes)
    for (bool log : {false, true}) {
      INFO("outer " << sh.outer << " D " << sh.D << " inner " << sh.inner << " log " << log);
      const int64_t n = sh.outer * sh.D * sh.inner;
      Vec x = uniform(n, 61, -4, 4);
      const Vec r = uniform(n, 62);
      Vec y_ref, y(n, kNaN), dx(n, kNaN);
      naive_softmax(sh.outer, sh.D, sh.inner, x, y_ref, log);
      auto loss = [&] {
        softmax_forward<double>(sh.outer, sh.D, sh.inner, x.data(), y.data(), log);
        return dot(y, r);
      };
      loss();
      expect_close(y_ref, y, 1e-12, 1e-12);
      softmax_backward<double>(sh.outer, sh.D, sh.inner, y.data(), r.data(), dx.data(), log);
      expect_grad(dx, x, loss, all_or_sample(x.size(), n > 2000 ? 40 : 0, 63), 1e-7);

      std::vector<float> fx = cast<float>(x), fr = cast<float>(r), fy(n), fdx(n);
      softmax_forward<float>(sh.outer, sh.D, sh.inner, fx.data(), fy.data(), log);
      softmax_backward<float>(sh.outer, sh.D, sh.inner, fy.data(), fr.data(), fdx.data(), log);
      expect_close(y_ref, fy, 1e-5, 1e-4);
      expect_close(dx, fdx, 1e-5, 1e-4);
    }
}

TEST_CASE("softmax subtracts the max so large logits do not overflow", "[kernels][cpu]") {
  std::vector<float> x = {1000.f, 1001.f, 999.f}, y(3), ly(3);
  softmax_forward<float>(1, 3, 1, x.data(), y.data(), false);
  softmax_forward<float>(1, 3, 1, x.data(), ly.data(), true);
  const double z = 1 + std::exp(-1.0) + std::exp(-2.0);
  expect_close(Vec{std::exp(-1.0) / z, 1 / z, std::exp(-2.0) / z}, y, 1e-6, 1e-5);
  expect_close(Vec{-1 - std::log(z), -std::log(z), -2 - std::log(z)}, ly, 1e-5, 1e-5);
  // A masked (-inf) logit gets (numerically) no probability, the others renormalise.
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xm = {0.f, -inf, 0.f, std::log(2.f)}, ym(4), lym(4);
  softmax_forward<float>(1, 4, 1, xm.data(), ym.data(), false);
  softmax_forward<float>(1, 4, 1, xm.data(), lym.data(), true);
  expect_close(Vec{0.25, 0.0, 0.25, 0.5}, ym, 1e-30, 1e-6);
  CHECK(lym[1] == -inf);
}

// ------------------------------------------------------------------------------- embedding

TEST_CASE("embedding gathers rows and scatter-adds gradients, skipping padding_idx",
          "[kernels][cpu]") {
  for (int64_t dim : {5, 200})
    for (int64_t n : {30, 300})
      for (int64_t padding_idx : {-1, 3}) {
        INFO("dim " << dim << " n " << n << " padding_idx " << padding_idx);
        const int64_t V = 10;
        std::mt19937 gen(71);
        std::uniform_int_distribution<int64_t> pick(0, V - 1);
        std::vector<int64_t> ids(n);
        for (auto& id : ids) id = pick(gen);  // many repeats, padding_idx among them
        const Vec weight = uniform(V * dim, 72), dy = uniform(n * dim, 73);
        Vec out_ref(n * dim), dw_ref(V * dim, 0.0);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t c = 0; c < dim; ++c) {
            out_ref[i * dim + c] = weight[ids[i] * dim + c];
            if (ids[i] != padding_idx) dw_ref[ids[i] * dim + c] += dy[i * dim + c];
          }
        Vec out(n * dim, kNaN), dw(V * dim, kNaN);  // dw must be zeroed by the kernel
        embedding_forward<double>(n, dim, weight.data(), ids.data(), out.data());
        embedding_backward<double>(n, dim, V, ids.data(), dy.data(), dw.data(), padding_idx);
        expect_close(out_ref, out, 0, 0);
        expect_close(dw_ref, dw, 1e-12, 1e-12);
        if (padding_idx >= 0) {
          const auto row = dw.begin() + padding_idx * dim;
          CHECK(std::all_of(row, row + dim, [](double v) { return v == 0.0; }));
        }
        std::vector<float> fw = cast<float>(weight), fdy = cast<float>(dy);
        std::vector<float> fout(n * dim), fdw(V * dim, 7.f);
        embedding_forward<float>(n, dim, fw.data(), ids.data(), fout.data());
        embedding_backward<float>(n, dim, V, ids.data(), fdy.data(), fdw.data(), padding_idx);
        expect_close(out_ref, fout, 1e-7, 1e-7);
        expect_close(dw_ref, fdw, 1e-5, 1e-4);
      }
}
