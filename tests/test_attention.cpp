// scaled_dot_product_attention (core/ops_attention.cpp, kernels/cpu/attention.cpp), rms_norm,
// apply_rotary and silu: against the same math composed from matmul / softmax (F64, forward and
// every gradient), finite-difference gradchecks, PyTorch's SDPA (golden sdpa_* cases), the
// edge cases (fully masked rows, long sequences over several query blocks), the errors, and
// the CUDA (composed) path against the CPU op (GPU only).
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "cuda_kernel_util.h"
#include "golden_util.h"
#include "gradcheck.h"

using namespace peft;
using peft::testing::gradcheck;
using peft::testing::make_randn;
using Xs = std::vector<Tensor>;

namespace {

// The definition: softmax(scale·q·kᵀ + mask)·v with kv heads repeated for GQA, causal as an
// additive -inf mask, I64 masks as 0 / -inf. Built from ops with their own backward rules.
Tensor reference_sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                      std::optional<double> scale) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3), Hkv = k.size(1), Tk = k.size(2);
  Tensor kk = k, vv = v;
  if (Hkv != H) {
    std::vector<Tensor> ks, vs;
    for (int64_t h = 0; h < H; ++h) {
      ks.push_back(k.slice(1, h / (H / Hkv), h / (H / Hkv) + 1));
      vs.push_back(v.slice(1, h / (H / Hkv), h / (H / Hkv) + 1));
    }
    kk = cat(ks, 1), vv = cat(vs, 1);
  }
  Tensor s = mul(matmul(q, kk.transpose(-2, -1)), scale ? *scale : 1.0 / std::sqrt(static_cast<double>(D)));
  const double ninf = -std::numeric_limits<double>::infinity();
  if (causal) {
    std::vector<double> c(static_cast<size_t>(Tq * Tk), 0.0);
    for (int64_t i = 0; i < Tq; ++i)
      for (int64_t j = i + 1; j < Tk; ++j) c[static_cast<size_t>(i * Tk + j)] = ninf;
    s = add(s, Tensor::from_vector(c, {Tq, Tk}).to(q.dtype()));
  }
  if (mask.defined()) {
    if (mask.dtype() == DType::I64) {
      std::vector<double> a;
      for (int64_t m : mask.contiguous().to_vector<int64_t>()) a.push_back(m ? 0.0 : ninf);
      s = add(s, Tensor::from_vector(a, mask.shape()).to(q.dtype()));
    } else {
      s = add(s, mask);
    }
  }
  (void)B;
  return matmul(softmax(s, -1), vv);
}

struct Case {
  const char* name;
  Shape q, k, v;
  int mask_kind;  // 0 none, 1 additive (B, 1, Tq, Tk), 2 boolean (1, H, Tq, Tk), 3 additive (Tk) row
  bool causal;
  std::optional<double> scale;
};

Tensor make_mask(int kind, const Shape& q, const Shape& k, DType dt) {
  Generator g(7);
  const int64_t B = q[0], H = q[1], Tq = q[2], Tk = k[2];
  if (kind == 1) return Tensor::randn({B, 1, Tq, Tk}, dt, &g);
  if (kind == 3) return Tensor::randn({Tk}, dt, &g);
  if (kind == 2) {
    std::vector<int64_t> m(static_cast<size_t>(H * Tq * Tk));
    for (size_t i = 0; i < m.size(); ++i) m[i] = (i % 3 != 1) || (i % Tk == 0);  // every row keeps key 0
    return Tensor::from_vector(m, {1, H, Tq, Tk});
  }
  return Tensor();
}

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"plain", {2, 3, 5, 4}, {2, 3, 5, 4}, {2, 3, 5, 4}, 0, false, std::nullopt},
      {"causal", {2, 2, 6, 4}, {2, 2, 6, 4}, {2, 2, 6, 4}, 0, true, std::nullopt},
      {"causal Tq < Tk", {1, 2, 3, 4}, {1, 2, 5, 4}, {1, 2, 5, 4}, 0, true, std::nullopt},
      {"gqa causal", {2, 4, 5, 4}, {2, 2, 5, 4}, {2, 2, 5, 3}, 0, true, 0.7},
      {"additive mask", {2, 2, 4, 3}, {2, 2, 6, 3}, {2, 2, 6, 5}, 1, false, std::nullopt},
      {"boolean mask, gqa", {2, 4, 4, 3}, {2, 1, 5, 3}, {2, 1, 5, 3}, 2, false, std::nullopt},
      {"1-D additive mask", {1, 2, 3, 4}, {1, 2, 7, 4}, {1, 2, 7, 4}, 3, false, 0.25},
  };
  return c;
}

}  // namespace

TEST_CASE("sdpa: forward and gradients equal the composed definition (F64)", "[attention]") {
  for (const auto& c : cases()) {
    DYNAMIC_SECTION(c.name) {
      Xs in = {make_randn(c.q), make_randn(c.k), make_randn(c.v)};
      const Tensor mask = make_mask(c.mask_kind, c.q, c.k, DType::F64);
      auto run = [&](bool fused) {
        Xs x;
        for (auto& t : in) x.push_back(t.detach().clone().set_requires_grad(true));
        Tensor out = fused ? scaled_dot_product_attention(x[0], x[1], x[2], mask, 0, c.causal, c.scale)
                           : reference_sdpa(x[0], x[1], x[2], mask, c.causal, c.scale);
        Generator g(3);
        Tensor w = Tensor::randn(out.shape(), DType::F64, &g);
        sum(mul(out, w)).backward();
        return Xs{out, x[0].grad(), x[1].grad(), x[2].grad()};
      };
      const Xs got = run(true), want = run(false);
      const char* what[] = {"out", "dq", "dk", "dv"};
      for (int i = 0; i < 4; ++i) {
        INFO(what[i]);
        REQUIRE(got[i].shape() == want[i].shape());
        const auto a = got[i].to_vector<double>(), b = want[i].to_vector<double>();
        for (size_t j = 0; j < a.size(); ++j) REQUIRE(a[j] == Approx(b[j]).margin(1e-12).epsilon(1e-10));
      }
    }
  }
}

TEST_CASE("sdpa: finite-difference gradcheck", "[attention][gradcheck]") {
  SECTION("causal, grouped-query") {
    CHECK_GRADCHECK([](const Xs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), 0, true); },
                    {make_randn({1, 4, 4, 3}), make_randn({1, 2, 4, 3}), make_randn({1, 2, 4, 2})});
  }
  SECTION("additive mask, 3-D (one head)") {
    const Tensor m = make_randn({3, 5}, false);
    CHECK_GRADCHECK([m](const Xs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], m); },
                    {make_randn({2, 3, 4}), make_randn({2, 5, 4}), make_randn({2, 5, 4})});
  }
}

TEST_CASE("sdpa: long sequences span several query blocks (F32 vs F64 composed)", "[attention]") {
  Generator g(11);
  const Tensor q = Tensor::randn({1, 2, 300, 16}, DType::F64, &g), k = Tensor::randn({1, 1, 300, 16}, DType::F64, &g),
               v = Tensor::randn({1, 1, 300, 8}, DType::F64, &g);
  const auto want = reference_sdpa(q, k, v, Tensor(), true, std::nullopt).to_vector<double>();
  const auto got64 = scaled_dot_product_attention(q, k, v, Tensor(), 0, true).to_vector<double>();
  const auto got32 =
      scaled_dot_product_attention(q.to(DType::F32), k.to(DType::F32), v.to(DType::F32), Tensor(), 0, true)
          .to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) {
    REQUIRE(got64[i] == Approx(want[i]).margin(1e-12));
    REQUIRE(got32[i] == Approx(want[i]).margin(2e-5));
  }
}

TEST_CASE("sdpa: a query row with every key masked gives 0 and no NaN gradient", "[attention]") {
  Generator g(5);
  Tensor q = Tensor::randn({1, 1, 3, 4}, DType::F64, &g).set_requires_grad(true);
  Tensor k = Tensor::randn({1, 1, 3, 4}, DType::F64, &g).set_requires_grad(true);
  Tensor v = Tensor::randn({1, 1, 3, 4}, DType::F64, &g).set_requires_grad(true);
  // Row 0 attends nothing (left padding under a causal rule), rows 1-2 attend keys 1..i.
  const Tensor m = Tensor::from_vector(std::vector<int64_t>{0, 0, 0, 0, 1, 0, 0, 1, 1}, {3, 3});
  Tensor out = scaled_dot_product_attention(q, k, v, m);
  const auto o = out.to_vector<double>();
  for (int j = 0; j < 4; ++j) CHECK(o[static_cast<size_t>(j)] == 0.0);
  const auto want = reference_sdpa(q.detach().slice(2, 1, 3), k.detach().slice(2, 1, 3), v.detach().slice(2, 1, 3),
                                   m.slice(0, 1, 3).slice(1, 1, 3), false, std::nullopt)
                        .to_vector<double>();
  for (size_t j = 0; j < want.size(); ++j) CHECK(o[4 + j] == Approx(want[j]).epsilon(1e-12));
  sum(out).backward();
  for (const Tensor& t : {q.grad(), k.grad(), v.grad()})
    for (double x : t.to_vector<double>()) REQUIRE(std::isfinite(x));
  for (int j = 0; j < 4; ++j) CHECK(q.grad().to_vector<double>()[static_cast<size_t>(j)] == 0.0);
}

TEST_CASE("sdpa: PyTorch's scaled_dot_product_attention (golden)", "[attention][golden]") {
  for (const char* name : {"sdpa_plain", "sdpa_causal", "sdpa_causal_rect", "sdpa_scale", "sdpa_gqa", "sdpa_bool_mask",
                           "sdpa_float_mask"}) {
    DYNAMIC_SECTION(name) {
      golden::Case c(name);
      auto meta = c.metadata();
      const bool causal = meta.at("is_causal") == "1";
      std::optional<double> scale;
      if (!meta.at("scale").empty()) scale = std::stod(meta.at("scale"));
      Tensor mask;
      if (c.has("mask_bool")) mask = c.get("mask_bool");
      if (c.has("mask")) mask = c.get("mask");
      Tensor q = c.leaf("q"), k = c.leaf("k"), v = c.leaf("v");
      Tensor out = scaled_dot_product_attention(q, k, v, mask, 0, causal, scale);
      golden::check_forward_backward(c, {{"out", out}}, {{"q", q}, {"k", k}, {"v", v}});
    }
  }
}

TEST_CASE("sdpa: bad input is refused with the op's name", "[attention][errors]") {
  const Tensor q = Tensor::zeros({1, 4, 3, 8}), k = Tensor::zeros({1, 2, 3, 8}), v = Tensor::zeros({1, 2, 3, 8});
  auto throws = [](auto f, const char* what) { REQUIRE_THROWS_WITH(f(), Catch::Contains(what)); };
  throws([&] { return scaled_dot_product_attention(q, Tensor::zeros({1, 3, 3, 8}), Tensor::zeros({1, 3, 3, 8})); },
         "H % Hkv");
  throws([&] { return scaled_dot_product_attention(q, Tensor::zeros({1, 2, 3, 7}), v); }, "same head size");
  throws([&] { return scaled_dot_product_attention(q, k, Tensor::zeros({1, 2, 4, 8})); }, "same heads and length");
  throws([&] { return scaled_dot_product_attention(q, k, v, Tensor(), 0.1); }, "dropout_p");
  throws([&] { return scaled_dot_product_attention(q, k, v, Tensor::zeros({3, 3}), 0, true); }, "not both");
  throws([&] { return scaled_dot_product_attention(q, k, v, Tensor::zeros({2, 3})); }, "does not broadcast");
  throws([&] { return scaled_dot_product_attention(q, k, v, Tensor::zeros({3, 3}, DType::F64)); }, "attn_mask has dtype");
  throws([&] { return scaled_dot_product_attention(q, k, v.to(DType::F64)); }, "scaled_dot_product_attention");
  throws([&] { return scaled_dot_product_attention(Tensor::zeros({3, 8}), k, v); }, "(B, H, T, D)");
}

TEST_CASE("rms_norm, apply_rotary, silu: values and gradients", "[attention][norm]") {
  SECTION("rms_norm equals x / sqrt(mean(x^2) + eps) * w") {
    Generator g(1);
    const Tensor x = Tensor::randn({2, 3, 6}, DType::F64, &g), w = Tensor::randn({6}, DType::F64, &g);
    const auto got = rms_norm(x, w, 1e-5).to_vector<double>(), xs = x.to_vector<double>(), ws = w.to_vector<double>();
    for (int64_t r = 0; r < 6; ++r) {
      double ms = 0;
      for (int64_t j = 0; j < 6; ++j) ms += xs[static_cast<size_t>(r * 6 + j)] * xs[static_cast<size_t>(r * 6 + j)] / 6;
      for (int64_t j = 0; j < 6; ++j)
        CHECK(got[static_cast<size_t>(r * 6 + j)] ==
              Approx(xs[static_cast<size_t>(r * 6 + j)] / std::sqrt(ms + 1e-5) * ws[static_cast<size_t>(j)]));
    }
    CHECK_GRADCHECK([](const Xs& a) { return rms_norm(a[0], a[1], 1e-6); }, {make_randn({3, 5}), make_randn({5})});
    REQUIRE_THROWS_WITH(rms_norm(x, Tensor::ones({5}, DType::F64), 1e-6), Catch::Contains("does not match"));
  }
  SECTION("apply_rotary rotates pairs (i, i + D/2) by the angle") {
    // D = 4, one position with cos/sin of angles a0, a1 for the two pairs.
    const double a0 = 0.3, a1 = -1.1;
    const Tensor cos = Tensor::from_vector(std::vector<double>{std::cos(a0), std::cos(a1), std::cos(a0), std::cos(a1)}, {1, 1, 4});
    const Tensor sin = Tensor::from_vector(std::vector<double>{std::sin(a0), std::sin(a1), std::sin(a0), std::sin(a1)}, {1, 1, 4});
    const Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {1, 1, 1, 4});
    const auto y = apply_rotary(x, cos, sin).to_vector<double>();
    CHECK(y[0] == Approx(1 * std::cos(a0) - 3 * std::sin(a0)));
    CHECK(y[2] == Approx(3 * std::cos(a0) + 1 * std::sin(a0)));
    CHECK(y[1] == Approx(2 * std::cos(a1) - 4 * std::sin(a1)));
    CHECK(y[3] == Approx(4 * std::cos(a1) + 2 * std::sin(a1)));
    CHECK_GRADCHECK([cos, sin](const Xs& a) { return apply_rotary(a[0], cos, sin); }, {make_randn({2, 3, 1, 4})});
    REQUIRE_THROWS_WITH(apply_rotary(Tensor::zeros({1, 1, 1, 3}, DType::F64), cos, sin), Catch::Contains("even D"));
  }
  SECTION("silu") {
    const auto y = silu(Tensor::from_vector(std::vector<double>{-1, 0, 2}, {3})).to_vector<double>();
    CHECK(y[0] == Approx(-1 / (1 + std::exp(1.0))));
    CHECK(y[1] == 0);
    CHECK(y[2] == Approx(2 / (1 + std::exp(-2.0))));
  }
}

TEST_CASE("sdpa on CUDA (composed path) equals the CPU op, left-padded rows stay finite", "[attention][cuda]") {
  if (!peft::testing::cuda_ready()) return;
  Generator g(21);
  const Tensor q = Tensor::randn({2, 4, 5, 8}, DType::F32, &g), k = Tensor::randn({2, 2, 5, 8}, DType::F32, &g),
               v = Tensor::randn({2, 2, 5, 8}, DType::F32, &g);
  // Row 1 of batch 1 is left padding: its first two keys are dropped for every query, so its
  // first two queries attend nothing.
  std::vector<int64_t> m(2 * 5 * 5, 0);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j <= i; ++j) m[static_cast<size_t>((b * 5 + i) * 5 + j)] = b == 0 || j >= 2;
  const Tensor mask = Tensor::from_vector(m, {2, 1, 5, 5});
  const Device dev = Device::cuda();
  for (bool causal : {false, true}) {
    const Tensor cpu = scaled_dot_product_attention(q, k, v, causal ? Tensor() : mask, 0, causal);
    const Tensor gpu = scaled_dot_product_attention(q.to(dev), k.to(dev), v.to(dev), causal ? Tensor() : mask.to(dev), 0,
                                                    causal)
                           .to(Device::cpu());
    const auto a = cpu.to_vector<float>(), b = gpu.to_vector<float>();
    for (size_t i = 0; i < a.size(); ++i) {
      REQUIRE(std::isfinite(b[i]));
      const size_t b_idx = i / (4 * 5 * 8), q_idx = (i / 8) % 5;
      if (!causal && b_idx == 1 && q_idx < 2) continue;  // attends nothing: 0 on the CPU, mean of v on CUDA
      REQUIRE(b[i] == Approx(a[i]).margin(1e-4));
    }
  }
}
