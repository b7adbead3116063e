// Tensor handle: factories, RNG determinism, view / stride / storage semantics, dtype
// conversions (BF16 / F16 bit patterns), item(), printing, and in-place updates.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

#include "peft.h"

using namespace peft;
using Catch::Matchers::Contains;
using V = std::vector<double>;

namespace {
std::vector<uint16_t> bits16(const Tensor& t) {
  Tensor c = t.contiguous();
  std::vector<uint16_t> out(static_cast<size_t>(c.numel()));
  std::memcpy(out.data(), c.raw_data(), out.size() * 2);
  return out;
}
Tensor from_bits16(const std::vector<uint16_t>& v, DType dt) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, dt);
  std::memcpy(t.raw_data(), v.data(), v.size() * 2);
  return t;
}
const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();
}  // namespace

// ---------------------------------------------------------------- factories

TEST_CASE("zeros, ones and full fill every element with the dtype asked for", "[tensor][factory]") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dtype() == DType::F32);
  CHECK(z.numel() == 6);
  CHECK(z.to_vector<double>() == V(6, 0.0));
  CHECK(Tensor::ones({4}, DType::F64).to_vector<double>() == V(4, 1.0));
  Tensor f = Tensor::full({2, 2}, 7, DType::I64);
  CHECK(f.dtype() == DType::I64);
  CHECK(f.to_vector<int64_t>() == std::vector<int64_t>(4, 7));
  CHECK(Tensor::full({3}, -2.5, DType::BF16).to_vector<double>() == V(3, -2.5));
  CHECK(Tensor::full({3}, 0.5, DType::F16).to_vector<double>() == V(3, 0.5));
  Tensor s = Tensor::scalar(3.25, DType::F64);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 3.25);
  CHECK(Tensor::zeros({0, 3}).numel() == 0);
}

TEST_CASE("arange counts from start by step, end excluded", "[tensor][factory]") {
  CHECK(Tensor::arange(5).to_vector<double>() == V{0, 1, 2, 3, 4});
  CHECK(Tensor::arange(1, 2, 0.25, DType::F64).to_vector<double>() == V{1, 1.25, 1.5, 1.75});
  CHECK(Tensor::arange(5, 0, -2, DType::F64).to_vector<double>() == V{5, 3, 1});
  Tensor i = Tensor::arange(4, DType::I64);
  CHECK(i.dtype() == DType::I64);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3});
  CHECK(Tensor::arange(3, 3, 1).numel() == 0);
  CHECK_THROWS_AS(Tensor::arange(0, 1, 0), Error);
}

TEST_CASE("from_vector keeps values and shape, and refuses a size mismatch", "[tensor][factory]") {
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(a.dtype() == DType::F32);
  CHECK(a.strides() == Shape{3, 1});
  CHECK(a.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(Tensor::from_vector(V{1.5}, {}).item() == 1.5);
  CHECK(Tensor::from_vector(std::vector<int64_t>{9, 8}, {2}).dtype() == DType::I64);
  CHECK_THROWS_AS(Tensor::from_vector(V{1, 2, 3}, {2, 2}), Error);
}

TEST_CASE("rand and randn are deterministic under manual_seed and per generator", "[tensor][factory][rng]") {
  manual_seed(42);
  std::vector<double> a = Tensor::randn({100}, DType::F64).to_vector<double>();
  std::vector<double> ua = Tensor::rand({50}).to_vector<double>();
  manual_seed(42);
  CHECK(Tensor::randn({100}, DType::F64).to_vector<double>() == a);
  CHECK(Tensor::rand({50}).to_vector<double>() == ua);
  manual_seed(43);
  CHECK(Tensor::randn({100}, DType::F64).to_vector<double>() != a);

  Generator g1(7), g2(7);
  CHECK(Tensor::rand({20}, DType::F64, &g1).to_vector<double>() == Tensor::rand({20}, DType::F64, &g2).to_vector<double>());
  g1.manual_seed(7);
  Generator g3(7);
  CHECK(Tensor::randn({9}, DType::F64, &g1).to_vector<double>() == Tensor::randn({9}, DType::F64, &g3).to_vector<double>());
}

TEST_CASE("rand lies in [low, high) and randn has the asked mean and std", "[tensor][factory][rng]") {
  Generator g(3);
  std::vector<double> u = Tensor::rand({10000}, DType::F64, &g, -2, 3).to_vector<double>();
  double lo = 1e9, hi = -1e9, m = 0;
  for (double x : u) { lo = std::min(lo, x); hi = std::max(hi, x); m += x; }
  CHECK(lo >= -2);
  CHECK(hi < 3);
  CHECK(m / u.size() == Approx(0.5).margin(0.05));
  std::vector<double> n = Tensor::randn({20000}, DType::F64, &g, 1.5, 2.0).to_vector<double>();
  double mean = 0, var = 0;
  for (double x : n) mean += x;
  mean /= n.size();
  for (double x : n) var += (x - mean) * (x - mean);
  var /= n.size();
  CHECK(mean == Approx(1.5).margin(0.05));
  CHECK(std::sqrt(var) == Approx(2.0).margin(0.05));
}

// ---------------------------------------------------------------- views and storage

TEST_CASE("views share storage and carry shape, strides and offset", "[tensor][view]") {
  Tensor a = Tensor::arange(24, DType::F64).view({2, 3, 4});
  CHECK(a.strides() == Shape{12, 4, 1});
  CHECK(a.is_contiguous());

  Tensor t = a.transpose(0, 2);
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.strides() == Shape{1, 4, 12});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.storage() == a.storage());

  Tensor p = a.permute({1, 2, 0});
  CHECK(p.shape() == Shape{3, 4, 2});
  CHECK(p.strides() == Shape{4, 1, 12});

  Tensor s = a.slice(2, 1, 4, 2);  // columns 1, 3
  CHECK(s.shape() == Shape{2, 3, 2});
  CHECK(s.strides() == Shape{12, 4, 2});
  CHECK(s.offset() == 1);
  CHECK(s.to_vector<double>() == V{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23});

  Tensor sel = a.select(1, 2);  // a[:, 2, :]
  CHECK(sel.shape() == Shape{2, 4});
  CHECK(sel.offset() == 8);
  CHECK(sel.storage() == a.storage());
  CHECK(sel.to_vector<double>() == V{8, 9, 10, 11, 20, 21, 22, 23});

  Tensor n = a.narrow(0, 1, 1);
  CHECK(n.offset() == 12);
  CHECK(a.slice(1, -2, 100).shape() == Shape{2, 2, 4});

  // A write through a view is seen by the base.
  {
    NoGradGuard g;
    sel.fill_(-1);
  }
  CHECK(a.select(1, 2).to_vector<double>() == V(8, -1.0));
  CHECK(a.to_vector<double>()[0] == 0);
}

TEST_CASE("squeeze, unsqueeze, flatten, view and reshape keep storage when they can", "[tensor][view]") {
  Tensor a = Tensor::zeros({2, 1, 3, 1});
  CHECK(a.squeeze().shape() == Shape{2, 3});
  CHECK(a.squeeze(1).shape() == Shape{2, 3, 1});
  CHECK(a.squeeze(0).shape() == Shape{2, 1, 3, 1});  // size 2: unchanged
  CHECK(a.unsqueeze(0).shape() == Shape{1, 2, 1, 3, 1});
  CHECK(a.unsqueeze(-1).shape() == Shape{2, 1, 3, 1, 1});
  CHECK(a.flatten().shape() == Shape{6});
  CHECK(a.flatten(1, 2).shape() == Shape{2, 3, 1});
  CHECK(a.squeeze().storage() == a.storage());
  Tensor b = Tensor::arange(12).view({3, 4});
  CHECK(b.view({-1}).storage() == b.storage());
  CHECK(b.view({2, -1}).shape() == Shape{2, 6});
  CHECK(b.reshape({4, 3}).storage() == b.storage());
  // A slice of whole rows is still viewable.
  CHECK(b.slice(0, 1, 3).view({8}).storage() == b.storage());
}

TEST_CASE("view of a non-contiguous tensor works where the strides allow it", "[tensor][view]") {
  Tensor a = Tensor::arange(24, DType::F64).view({4, 6});
  Tensor s = a.slice(1, 0, 6, 2);  // (4, 3) strides (6, 2)
  Tensor v = s.view({2, 2, 3});    // splits the outer dim only
  CHECK(v.strides() == Shape{12, 6, 2});
  CHECK(v.storage() == a.storage());
  CHECK(v.to_vector<double>() == s.contiguous().to_vector<double>());
  CHECK(s.view({12}).strides() == Shape{2});  // rows chain: 6 = 3 · 2
  CHECK_THROWS_AS(a.slice(1, 0, 4).view({16}), Error);  // rows of 4 with stride 6 do not chain
  Tensor t = a.t();                // (6, 4) strides (1, 6)
  Tensor tv = t.view({3, 2, 4});
  CHECK(tv.strides() == Shape{2, 1, 6});
  CHECK(tv.to_vector<double>() == t.contiguous().to_vector<double>());
  // Size-1 dims do not constrain a view.
  Tensor col = Tensor::arange(3).view({1, 3}).t();  // (3, 1) strides (1, 3)
  CHECK(col.is_contiguous());
  CHECK(col.view({3}).to_vector<double>() == V{0, 1, 2});
}

TEST_CASE("reshape of a non-contiguous tensor copies; view refuses it", "[tensor][view]") {
  Tensor a = Tensor::arange(6, DType::F64).view({2, 3});
  Tensor t = a.t();
  Tensor r = t.reshape({6});
  CHECK(r.storage() != a.storage());
  CHECK(r.to_vector<double>() == V{0, 3, 1, 4, 2, 5});
  CHECK_THROWS_AS(t.view({6}), Error);
}

TEST_CASE("contiguous returns self when contiguous, else a row-major copy", "[tensor][view]") {
  Tensor a = Tensor::arange(6, DType::F64).view({2, 3});
  CHECK(a.contiguous().is_same(a));
  Tensor c = a.t().contiguous();
  CHECK(c.is_contiguous());
  CHECK(c.storage() != a.storage());
  CHECK(c.strides() == Shape{2, 1});
  CHECK(c.to_vector<double>() == V{0, 3, 1, 4, 2, 5});
  Tensor cl = a.clone();
  CHECK(cl.storage() != a.storage());
  CHECK(cl.to_vector<double>() == a.to_vector<double>());
}

TEST_CASE("t() transposes 2-D and returns 0-D and 1-D tensors as is, as torch.t", "[tensor][view]") {
  Tensor m = Tensor::arange(6).view({2, 3});
  CHECK(m.t().shape() == Shape{3, 2});
  CHECK(m.t().strides() == Shape{1, 3});
  Tensor v = Tensor::arange(3);
  CHECK(v.t().shape() == Shape{3});
  CHECK(v.t().to_vector<double>() == V{0, 1, 2});
  CHECK(Tensor::scalar(1).t().dim() == 0);
  CHECK_THROWS_WITH(Tensor::zeros({2, 3, 4}).t(), Contains("[2, 3, 4]"));
}

TEST_CASE("expand broadcasts with stride 0 and no copy", "[tensor][view]") {
  Tensor a = Tensor::from_vector(V{1, 2, 3}, {3, 1});
  Tensor e = a.expand({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(e.storage() == a.storage());
  CHECK(e.select(0, 1).select(1, 3).to_vector<double>() == V{1, 2, 3});
  CHECK(a.expand({-1, 2}).shape() == Shape{3, 2});
  Tensor s = Tensor::scalar(5).expand({2, 2});
  CHECK(s.strides() == Shape{0, 0});
  CHECK(s.to_vector<double>() == V(4, 5));
}

// ---------------------------------------------------------------- dtypes

TEST_CASE("BF16: known bit patterns, round to nearest even, inf and nan", "[tensor][dtype]") {
  CHECK(float_to_bf16(1.0f) == 0x3F80);
  CHECK(float_to_bf16(-2.0f) == 0xC000);
  CHECK(float_to_bf16(0.0f) == 0x0000);
  CHECK(float_to_bf16(-0.0f) == 0x8000);
  CHECK(bf16_to_float(0x3F80) == 1.0f);
  CHECK(bf16_to_float(0x4049) == 3.140625f);
  // 1 + 2^-8 lies halfway between 0x3F80 and 0x3F81: ties go to the even 0x3F80;
  // 1 + 3·2^-8 lies halfway between 0x3F81 and 0x3F82: ties go to 0x3F82.
  CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);
  CHECK(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3F82);
  CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 0x3F81);  // above half: up
  CHECK(float_to_bf16(kInf) == 0x7F80);
  CHECK(float_to_bf16(-kInf) == 0xFF80);
  CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds up to inf
  CHECK(std::isnan(bf16_to_float(float_to_bf16(kNaN))));
  CHECK(std::isinf(bf16_to_float(0x7F80)));

  Tensor t = Tensor::from_vector(std::vector<float>{1.0f, -2.0f, 0.5f, 1.0f + std::ldexp(1.0f, -8)}, {4}).to(DType::BF16);
  CHECK(t.dtype() == DType::BF16);
  CHECK(t.nbytes() == 8);
  CHECK(bits16(t) == std::vector<uint16_t>{0x3F80, 0xC000, 0x3F00, 0x3F80});
  CHECK(from_bits16({0x3F80, 0x4049, 0x7F80}, DType::BF16).to_vector<float>() == std::vector<float>{1.0f, 3.140625f, kInf});
}

TEST_CASE("F16: known bit patterns, rounding, subnormals, overflow, inf and nan", "[tensor][dtype]") {
  CHECK(float_to_f16(1.0f) == 0x3C00);
  CHECK(float_to_f16(-2.0f) == 0xC000);
  CHECK(float_to_f16(65504.0f) == 0x7BFF);  // largest finite half
  CHECK(float_to_f16(65520.0f) == 0x7C00);  // halfway to the next: ties to even → inf
  CHECK(float_to_f16(1e6f) == 0x7C00);
  CHECK(float_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);      // tie → even
  CHECK(float_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie → even
  CHECK(float_to_f16(std::ldexp(1.0f, -24)) == 0x0001);             // smallest subnormal
  CHECK(float_to_f16(std::ldexp(1.0f, -14)) == 0x0400);             // smallest normal
  CHECK(float_to_f16(std::ldexp(1.0f, -26)) == 0x0000);             // underflows to 0
  CHECK(f16_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_to_float(0x03FF) == std::ldexp(1023.0f, -24));
  CHECK(f16_to_float(0x3C00) == 1.0f);
  CHECK(f16_to_float(0x7BFF) == 65504.0f);
  CHECK(float_to_f16(kInf) == 0x7C00);
  CHECK(float_to_f16(-kInf) == 0xFC00);
  CHECK(std::isinf(f16_to_float(0x7C00)));
  CHECK(std::isnan(f16_to_float(float_to_f16(kNaN))));
  CHECK(f16_to_float(0x8000) == 0.0f);
  CHECK(std::signbit(f16_to_float(0x8000)));

  Tensor t = Tensor::from_vector(std::vector<float>{1.0f, 0.5f, -65504.0f}, {3}).to(DType::F16);
  CHECK(bits16(t) == std::vector<uint16_t>{0x3C00, 0x3800, 0xFBFF});
  CHECK(t.to(DType::F32).to_vector<float>() == std::vector<float>{1.0f, 0.5f, -65504.0f});
}

TEST_CASE("exactly representable values survive F32 → BF16/F16 → F32", "[tensor][dtype]") {
  std::vector<float> v{0.0f, 1.0f, -1.5f, 0.125f, 96.0f, -3.0f, 1024.0f, std::ldexp(1.0f, -10)};
  Tensor a = Tensor::from_vector(v, {2, 4});
  for (DType dt : {DType::BF16, DType::F16}) {
    Tensor h = a.to(dt);
    CHECK(h.shape() == a.shape());
    CHECK(h.to(DType::F32).to_vector<float>() == v);
    CHECK(h.to(DType::F64).to_vector<float>() == v);
    CHECK(h.t().contiguous().to(DType::F32).to_vector<float>() == a.t().contiguous().to_vector<float>());
  }
}

TEST_CASE("to() converts between dtypes; the same dtype is a no-op", "[tensor][dtype]") {
  Tensor a = Tensor::from_vector(V{1.75, -2.25, 3.0}, {3});
  CHECK(a.to(DType::F64).is_same(a));
  CHECK(a.to(DType::F32).dtype() == DType::F32);
  CHECK(a.to(DType::I64).to_vector<int64_t>() == std::vector<int64_t>{1, -2, 3});  // truncation, as PyTorch
  CHECK(Tensor::arange(3, DType::I64).to(DType::F32).to_vector<float>() == std::vector<float>{0, 1, 2});
}

TEST_CASE("I64 copies are exact beyond 2^53", "[tensor][dtype]") {
  const int64_t big = (int64_t{1} << 62) + 1, max = std::numeric_limits<int64_t>::max();
  Tensor a = Tensor::from_vector(std::vector<int64_t>{big, -big, max, 3}, {2, 2});
  CHECK(a.clone().to_vector<int64_t>() == std::vector<int64_t>{big, -big, max, 3});
  CHECK(a.t().contiguous().to_vector<int64_t>() == std::vector<int64_t>{big, max, -big, 3});  // strided copy
  Tensor d = Tensor::zeros({2, 2}, DType::I64);
  d.copy_(a.select(0, 0));  // broadcast row
  CHECK(d.to_vector<int64_t>() == std::vector<int64_t>{big, -big, big, -big});
}

TEST_CASE("item() reads a one-element tensor of any dtype and refuses more", "[tensor]") {
  CHECK(Tensor::scalar(2.5).item() == 2.5);
  CHECK(Tensor::full({1, 1}, 4, DType::I64).item<int64_t>() == 4);
  CHECK(Tensor::full({1}, -0.5, DType::BF16).item() == -0.5);
  CHECK(Tensor::arange(6, DType::F64).view({2, 3}).select(0, 1).select(0, 2).item() == 5);
  CHECK_THROWS_AS(Tensor::zeros({2}).item(), Error);
  CHECK_THROWS_WITH(Tensor::zeros({2, 3}).item(), Contains("[2, 3]"));
}

TEST_CASE("to_string shows values, shape, dtype and autograd state", "[tensor][print]") {
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2.5f, -3, 4}, {2, 2});
  std::string s = a.to_string();
  CHECK_THAT(s, Contains("tensor("));
  CHECK_THAT(s, Contains("2.5"));
  CHECK_THAT(s, Contains("-3"));
  CHECK_THAT(s, Contains("shape=[2, 2]"));
  CHECK_THAT(s, Contains("dtype=F32"));
  std::ostringstream os;
  os << a;
  CHECK(os.str() == s);
  CHECK_THAT(Tensor::arange(3, DType::I64).to_string(), Contains("[0, 1, 2]"));
  CHECK_THAT(Tensor::arange(100).to_string(), Contains("..."));  // long rows elide
  Tensor w = Tensor::ones({2}).set_requires_grad(true);
  CHECK_THAT(w.to_string(), Contains("requires_grad"));
  CHECK_THAT(mul(w, 2.0).to_string(), Contains("grad_fn=<MulBackward>"));
  CHECK(Tensor().to_string() == "Tensor(undefined)");
}

// ---------------------------------------------------------------- in-place

TEST_CASE("in-place ops are refused on tensors requiring grad while grad mode is on", "[tensor][inplace]") {
  Tensor w = Tensor::ones({3}).set_requires_grad(true);
  CHECK_THROWS_WITH(w.add_(Tensor::ones({3})), Contains("in-place"));
  CHECK_THROWS_AS(w.mul_(2), Error);
  CHECK_THROWS_AS(w.fill_(0), Error);
  CHECK_THROWS_AS(w.zero_(), Error);
  CHECK_THROWS_AS(w.copy_(Tensor::zeros({3})), Error);
  CHECK(w.to_vector<double>() == V(3, 1.0));  // untouched
  {
    NoGradGuard g;
    w.add_(Tensor::ones({3}), 0.5).mul_(2);
  }
  CHECK(w.to_vector<double>() == V(3, 3.0));
  w.detach().fill_(7);  // a detached alias may be written and shares storage
  CHECK(w.to_vector<double>() == V(3, 7.0));
}

TEST_CASE("add_ and mul_ update in place, broadcasting the other operand", "[tensor][inplace]") {
  Tensor a = Tensor::zeros({2, 3}, DType::F64);
  a.add_(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}), 2);  // converted and broadcast
  CHECK(a.to_vector<double>() == V{2, 4, 6, 2, 4, 6});
  a.mul_(0.5);
  CHECK(a.to_vector<double>() == V{1, 2, 3, 1, 2, 3});
  a.t().select(0, 0).fill_(9);  // through a view: column 0
  CHECK(a.to_vector<double>() == V{9, 2, 3, 9, 2, 3});
}

TEST_CASE("copy_ broadcasts the source and converts its dtype", "[tensor][inplace]") {
  Tensor dst = Tensor::zeros({2, 3}, DType::F64);
  dst.copy_(Tensor::from_vector(std::vector<float>{1.5f, 2.5f, 3.5f}, {3}));
  CHECK(dst.to_vector<double>() == V{1.5, 2.5, 3.5, 1.5, 2.5, 3.5});
  dst.copy_(Tensor::scalar(4));
  CHECK(dst.to_vector<double>() == V(6, 4.0));
  Tensor col = Tensor::from_vector(std::vector<int64_t>{7, 8}, {2, 1});
  dst.copy_(col);
  CHECK(dst.to_vector<double>() == V{7, 7, 7, 8, 8, 8});
  Tensor bf = Tensor::zeros({3}, DType::BF16);
  bf.copy_(Tensor::from_vector(V{1, -0.5, 256}, {3}));
  CHECK(bits16(bf) == std::vector<uint16_t>{0x3F80, 0xBF00, 0x4380});
  Tensor i = Tensor::zeros({2}, DType::I64);
  i.copy_(Tensor::from_vector(V{2.9, -2.9}, {2}));
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{2, -2});
  // Into a strided destination: only the viewed elements change.
  Tensor base = Tensor::zeros({2, 4}, DType::F64);
  base.slice(1, 0, 4, 2).copy_(Tensor::ones({2, 2}, DType::F64));
  CHECK(base.to_vector<double>() == V{1, 0, 1, 0, 1, 0, 1, 0});
  CHECK_THROWS_AS(dst.copy_(Tensor::zeros({4})), Error);  // not broadcastable
}
