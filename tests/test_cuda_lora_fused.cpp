// The fused LoRA kernels (kernels/cuda/lora_fused.cu on the tensor-core GEMM of
// kernels/cuda/tc_gemm.cuh) against an independent host reference in double, and lora_linear on
// CUDA (which takes them for BF16 and TF32) against the CPU op.
//
// Kernel level: every output of forward (y, the scratch us = s·dropout(x)·Aᵀ) and backward (dx, dA,
// dB, the scratch dU = s·dY·B) lands in a poisoned device buffer (all bytes 0xFF: NaN), so an
// element the kernels never write fails; r ∈ {1, 8, 16, 64, 128}, sizes that are no multiple of
// the tiles (and shapes several tiles wide), dropout 0 and 0.1 with the mask spelled out on the
// host from kernels/cpu/dropout_philox (the same Philox decision the kernels regenerate), BF16 and
// TF32. Odd leading dimensions (in = 67) run everything on tc_gemm's simple kernel; leading
// dimensions that are multiples of 16 bytes send the products larger than 64 in both directions
// (y, dX; dU at r = 128) through the pipelined one (which products take it is checked
// separately, on the host); a batch of 1100 rows splits dA's and dB's K. tc_gemm is also tested
// directly: partial 16-byte chunks at the K and N edges, bias, alpha and accumulate, each product
// on both kernels.
//
// Tolerances: the inputs are the values the device sees (BF16-rounded for BF16). The error of a
// dot product of K rounded terms scales with the terms, not with the sum (which may cancel), so
// the bound is relative to the largest reference element of the tensor: |gpu − ref| ≤ tol ·
// max|ref|. TF32 rounds each operand to 11 significant bits (2^-11 ≈ 5e-4): tol 1e-2. BF16 rounds
// operands and the intermediates it stores (us, dU) to 8 bits (2^-9 ≈ 2e-3) and the output once
// more: tol 3e-2. A wrong index, a wrong mask element or a missed segment moves an
// element by O(max|ref|) and fails.
//
// Without a GPU the comparisons print "skipped: no CUDA device"; the argument checks (which run
// before any CUDA call) and the switch still run in a CUDA build.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "cuda_kernel_util.h"
#include "kernels/cpu/dropout_philox.h"

#ifdef PEFT_WITH_CUDA
#include "kernels/cuda/tc_gemm.cuh"
#include "kernels/cuda/tc_gemm_internal.cuh"
#endif

using namespace peft;
using Catch::Matchers::Contains;

namespace {

// Values in ±[0.1, 1.5]/sqrt(fan_in) (never zero), rounded to BF16 when the device reads BF16.
std::vector<float> values(size_t n, uint64_t seed, double fan_in, bool bf16) {
  const double hi = 1.5 / std::sqrt(fan_in), lo = 0.1 / std::sqrt(fan_in);
  std::vector<float> v = peft::testing::random_vec<float>(n, seed, false, lo, hi);
  if (bf16)
    for (float& e : v) e = bf16_to_float(float_to_bf16(e));
  return v;
}

struct Case {
  bool bf16;
  int64_t N, in, out, r;
  double p;
  std::string name() const {
    return std::string(bf16 ? "BF16" : "TF32") + " N " + std::to_string(N) + " in " + std::to_string(in) + " out " +
           std::to_string(out) + " r " + std::to_string(r) + " p " + std::to_string(p);
  }
};

struct Inputs {
  std::vector<float> x, w, b, A, B, dy;
};

Inputs make_inputs(const Case& c, uint64_t seed) {
  auto n = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
  return {values(n(c.N, c.in), seed, 1, c.bf16),           values(n(c.out, c.in), seed + 1, c.in, c.bf16),
          values(n(c.out, 1), seed + 2, 1, c.bf16),        values(n(c.r, c.in), seed + 3, c.in, c.bf16),
          values(n(c.out, c.r), seed + 4, c.r, c.bf16),    values(n(c.N, c.out), seed + 5, 1, c.bf16)};
}

struct Outputs {
  std::vector<double> u0, y, dU0, dx, dA, dB;
};

// lora_linear's forward and backward written out in double, dropout mask from the CPU's Philox.
Outputs reference(const Case& c, const Inputs& h, double s, uint64_t seed) {
  const int64_t N = c.N, in = c.in, out = c.out, r = c.r;
  std::vector<double> keep(static_cast<size_t>(N * in), 1.0);
  if (c.p > 0) {
    std::vector<uint8_t> m(keep.size());
    kernels::cpu::dropout_philox_mask(N * in, c.p, seed, 0, m.data());
    const double ks = static_cast<float>(1.0 / (1.0 - c.p));
    for (size_t i = 0; i < m.size(); ++i) keep[i] = m[i] ? ks : 0.0;
  }
  Outputs o;
  o.u0.assign(static_cast<size_t>(N * r), 0);
  o.y.assign(static_cast<size_t>(N * out), 0);
  o.dU0.assign(static_cast<size_t>(N * r), 0);
  o.dx.assign(static_cast<size_t>(N * in), 0);
  o.dA.assign(static_cast<size_t>(r * in), 0);
  o.dB.assign(static_cast<size_t>(out * r), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < r; ++j)
      for (int64_t k = 0; k < in; ++k) o.u0[n * r + j] += h.x[n * in + k] * keep[n * in + k] * h.A[j * in + k];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t q = 0; q < out; ++q) {
      double v = h.b[q];
      for (int64_t k = 0; k < in; ++k) v += double(h.x[n * in + k]) * h.w[q * in + k];
      for (int64_t j = 0; j < r; ++j) v += s * o.u0[n * r + j] * h.B[q * r + j];
      o.y[n * out + q] = v;
    }
  for (int64_t q = 0; q < out; ++q)
    for (int64_t j = 0; j < r; ++j)
      for (int64_t n = 0; n < N; ++n) o.dB[q * r + j] += s * h.dy[n * out + q] * o.u0[n * r + j];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < r; ++j)
      for (int64_t q = 0; q < out; ++q) o.dU0[n * r + j] += s * h.dy[n * out + q] * h.B[q * r + j];
  for (int64_t j = 0; j < r; ++j)
    for (int64_t k = 0; k < in; ++k)
      for (int64_t n = 0; n < N; ++n) o.dA[j * in + k] += o.dU0[n * r + j] * h.x[n * in + k] * keep[n * in + k];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < in; ++k) {
      double low = 0, base = 0;
      for (int64_t j = 0; j < r; ++j) low += o.dU0[n * r + j] * h.A[j * in + k];
      for (int64_t q = 0; q < out; ++q) base += double(h.dy[n * out + q]) * h.w[q * in + k];
      o.dx[n * in + k] = keep[n * in + k] * low + base;
    }
  return o;
}

Tensor host(const std::vector<float>& v, const Shape& shape) { return Tensor::from_vector(v, shape); }

}  // namespace

TEST_CASE("the LoRA path switch defaults to the measured rule (Auto) and toggles", "[cuda][lora]") {
  CHECK(cuda::lora_path() == cuda::LoraCudaPath::Auto);
  CHECK(cuda::lora_fused());
  cuda::set_lora_fused(false);
  CHECK(cuda::lora_path() == cuda::LoraCudaPath::Chain);
  CHECK_FALSE(cuda::lora_fused());
  cuda::set_lora_path(cuda::LoraCudaPath::Wmma);
  CHECK(cuda::lora_fused());
  CHECK(std::string(cuda::lora_path_name(cuda::lora_path())) == "wmma");
  cuda::set_lora_fused(true);
  CHECK(cuda::lora_path() == cuda::LoraCudaPath::Auto);
}

TEST_CASE("the double reference of the fused-kernel test agrees with CPU autograd", "[cuda][lora]") {
  // Pins the reference the GPU cases rely on (runs in every build): same inputs, the CPU ops with
  // the Philox mask spelled out, F64 so the two differ only by summation order.
  for (double p : {0.0, 0.1}) {
    const Case c{false, 13, 11, 7, 5, p};
    const Inputs h = make_inputs(c, 3);
    const double s = 2.0;
    const uint64_t seed = 1234;
    const Outputs ref = reference(c, h, s, seed);
    auto t = [](const std::vector<float>& v, const Shape& shape) { return host(v, shape).to(DType::F64); };
    Tensor x = t(h.x, {c.N, c.in}), w = t(h.w, {c.out, c.in}), b = t(h.b, {c.out}), A = t(h.A, {c.r, c.in}),
           B = t(h.B, {c.out, c.r});
    for (Tensor* q : {&x, &A, &B}) q->requires_grad_();
    std::vector<uint8_t> keep(static_cast<size_t>(x.numel()));
    kernels::cpu::dropout_philox_mask(x.numel(), p, seed, 0, keep.data());
    std::vector<double> m(keep.size());
    for (size_t i = 0; i < keep.size(); ++i) m[i] = keep[i] ? static_cast<float>(1.0 / (1.0 - p)) : 0.f;
    Tensor y = add(linear(x, w, b), mul(linear(linear(mul(x, Tensor::from_vector(m, x.shape())), A), B), s));
    y.backward(t(h.dy, {c.N, c.out}));
    auto same = [](const Tensor& got, const std::vector<double>& want, const char* what) {
      const std::vector<double> g = got.to_vector<double>();
      REQUIRE(g.size() == want.size());
      for (size_t i = 0; i < g.size(); ++i) {
        INFO(what << " element " << i);
        CHECK(g[i] == Approx(want[i]).margin(1e-12).epsilon(1e-12));
      }
    };
    same(y, ref.y, "y");
    same(x.grad(), ref.dx, "dx");
    same(A.grad(), ref.dA, "dA");
    same(B.grad(), ref.dB, "dB");
  }
}

#ifdef PEFT_WITH_CUDA
namespace {
using peft::testing::DeviceBuffer;

// Host floats as device elements: F32 as they are, BF16 (uint16_t bits) rounded to nearest even.
template <class T>
std::vector<T> to_elems(const std::vector<float>& v) {
  std::vector<T> t(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (sizeof(T) == 2) t[i] = float_to_bf16(v[i]);
    else t[i] = v[i];
  }
  return t;
}
template <class T>
std::vector<float> to_floats(const std::vector<T>& t) {
  std::vector<float> v(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    if constexpr (sizeof(T) == 2) v[i] = bf16_to_float(t[i]);
    else v[i] = t[i];
  }
  return v;
}

// |gpu − ref| <= tol · max|ref| everywhere; NaN (an unwritten, poisoned element) fails.
void check_scaled(const std::vector<float>& gpu, const std::vector<double>& ref, double tol, const std::string& what) {
  REQUIRE(gpu.size() == ref.size());
  double scale = 0;
  for (double v : ref) scale = std::max(scale, std::fabs(v));
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::fabs(gpu[i] - ref[i]) <= tol * scale) && bad++ == 0) first = i;
  INFO(what << ": " << bad << " of " << ref.size() << " elements off by more than " << tol << " * " << scale
            << (bad ? "; first at " + std::to_string(first) + ": gpu " + std::to_string(gpu[first]) + ", ref " +
                          std::to_string(ref[first])
                    : std::string()));
  CHECK(bad == 0);
}


// One case through cuda_ops::lora_fused_forward / _backward on poisoned buffers.
void run_kernel_case(const Case& c) {
  INFO(c.name());
  const double s = 2.0;
  const uint64_t seed = 0x5eed0000u + static_cast<uint64_t>(c.r * 7 + (c.p > 0));
  const Inputs h = make_inputs(c, 100 + static_cast<uint64_t>(c.r));
  const Outputs ref = reference(c, h, s, seed);
  const DType dt = c.bf16 ? DType::BF16 : DType::F32;
  const Device d = Device::cuda(0);
  const auto sz = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
  std::vector<float> got_us, got_y, got_dU, got_dx, got_dA, got_dB;
  auto run = [&](auto elem) {
    using T = decltype(elem);
    auto to_dev = [](const std::vector<float>& v) { return to_elems<T>(v); };
    auto from_dev = [](const std::vector<T>& t) { return to_floats(t); };
    DeviceBuffer<T> x(to_dev(h.x)), w(to_dev(h.w)), b(to_dev(h.b)), A(to_dev(h.A)), B(to_dev(h.B)), dy(to_dev(h.dy));
    DeviceBuffer<T> y(sz(c.N, c.out)), dx(sz(c.N, c.in)), dA(sz(c.r, c.in)), dB(sz(c.out, c.r));
    DeviceBuffer<T> us(sz(c.N, c.r)), dU(sz(c.N, c.r));
    // The kernels run on peft's non-blocking stream: the poison and the uploads must be done first.
    peft::testing::cuda_require(cudaDeviceSynchronize(), "buffer setup");
    cuda_ops::lora_fused_forward(c.N, c.in, c.out, c.r, x.get(), w.get(), b.get(), A.get(), B.get(), s, c.p, seed,
                                 us.get(), y.get(), dt, d);
    cuda_ops::lora_fused_backward(c.N, c.in, c.out, c.r, dy.get(), x.get(), w.get(), A.get(), B.get(), us.get(), s,
                                  c.p, seed, dU.get(), dx.get(), dA.get(), dB.get(), dt, d);
    got_us = from_dev(us.download());
    got_dU = from_dev(dU.download());
    got_y = from_dev(y.download());
    got_dx = from_dev(dx.download());
    got_dA = from_dev(dA.download());
    got_dB = from_dev(dB.download());
  };
  if (c.bf16) run(uint16_t{});
  else run(float{});
  const double tol = c.bf16 ? 3e-2 : 1e-2;
  std::vector<double> ref_us = ref.u0;
  for (double& v : ref_us) v *= s;
  check_scaled(got_us, ref_us, tol, "us = s·dropout(x)·Aᵀ");
  check_scaled(got_y, ref.y, tol, "y");
  check_scaled(got_dU, ref.dU0, tol, "dU = s·dY·B");
  check_scaled(got_dx, ref.dx, tol, "dx");
  check_scaled(got_dA, ref.dA, tol, "dA");
  check_scaled(got_dB, ref.dB, tol, "dB");
}
}  // namespace

TEST_CASE("fused LoRA kernels match a double reference: r 1..128, tails, dropout 0 / 0.1, BF16 and TF32",
          "[cuda][lora][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  for (bool bf16 : {false, true})
    for (int64_t r : {1, 8, 16, 64, 128})
      for (double p : {0.0, 0.1}) run_kernel_case({bf16, 70, 67, 45, r, p});
  // Leading dimensions a multiple of 16 bytes: y and dX on the pipelined kernel (r = 1 keeps the
  // low-rank segments' ld at 1 element: the simple kernel again).
  for (bool bf16 : {false, true})
    for (int64_t r : {1, 8, 16, 64, 128})
      for (double p : {0.0, 0.1}) run_kernel_case({bf16, 70, 72, 40, r, p});
  // Several tiles in every direction, K slices with a tail: y pipelined and dX simple (dY's leading
  // dimension 131), then both pipelined (every dimension a multiple of 8).
  for (bool bf16 : {false, true}) {
    run_kernel_case({bf16, 150, 200, 131, 16, 0.1});
    run_kernel_case({bf16, 300, 264, 136, 16, 0.1});
  }
  // A batch long enough for split-K in dA and dB (K = N = 1100: 4 slices of 288, the last shorter).
  for (bool bf16 : {false, true}) {
    run_kernel_case({bf16, 1100, 72, 40, 16, 0.1});
    run_kernel_case({bf16, 1100, 67, 45, 8, 0.1});
  }
  // Degenerate sizes: an empty batch still zero-fills dA and dB; in = 0 leaves y = b, dA / dx empty.
  run_kernel_case({true, 0, 67, 45, 8, 0.1});
  run_kernel_case({false, 9, 0, 5, 4, 0.0});
}

namespace {
// One tc_gemm call with two segments on host data whose padding (ld > the inner size) is NaN, so a
// load past a row's end poisons the result: out = alpha·(mask ⊙ (a0·b0ᵀ) + a1·b1ᵀ) + bias (+ old).
template <class T>
void run_tc_gemm_case(bool bf16, int64_t lda, bool accumulate) {
  namespace kc = peft::kernels::cuda;
  INFO((bf16 ? "BF16" : "TF32") << ", lda " << lda << (accumulate ? ", accumulate" : ""));
  const int64_t M = 100, N = 101, K0 = 37, K1 = 20, ldb = 104, lda1 = 24;
  const float alpha = 0.5f;
  const double p = 0.2;
  const uint64_t seed = 77;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto fill = [&](int64_t rows, int64_t cols, int64_t ld, uint64_t sd) {  // (rows, cols) in rows of ld
    std::vector<float> v(static_cast<size_t>(rows * ld), nan);
    const std::vector<float> r = values(static_cast<size_t>(rows * cols), sd, static_cast<double>(cols), bf16);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) v[i * ld + j] = r[i * cols + j];
    return v;
  };
  const std::vector<float> a0 = fill(M, K0, lda, 1), b0 = fill(K0, N, ldb, 2);  // b0 not k-inner: (k, n)
  const std::vector<float> a1 = fill(M, K1, lda1, 3), b1 = fill(K1, N, ldb, 4);
  const std::vector<float> bias = values(static_cast<size_t>(N), 5, 1, bf16);
  const std::vector<float> old = values(static_cast<size_t>(M * N), 6, 1, bf16);
  std::vector<uint8_t> keep(static_cast<size_t>(M * N));
  kernels::cpu::dropout_philox_mask(M * N, p, seed, 0, keep.data());
  const double ks = static_cast<float>(1.0 / (1.0 - p));
  std::vector<double> ref(static_cast<size_t>(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s0 = 0, s1 = 0;
      for (int64_t k = 0; k < K0; ++k) s0 += double(a0[m * lda + k]) * b0[k * ldb + n];
      for (int64_t k = 0; k < K1; ++k) s1 += double(a1[m * lda1 + k]) * b1[k * ldb + n];
      const double v = alpha * ((keep[m * N + n] ? ks : 0.0) * s0 + s1) + bias[n];
      ref[m * N + n] = v + (accumulate ? old[m * N + n] : 0.0);
    }
  auto dev = [](const std::vector<float>& v) { return to_elems<T>(v); };

  DeviceBuffer<T> da0(dev(a0)), db0(dev(b0)), da1(dev(a1)), db1(dev(b1)), dbias(dev(bias));
  DeviceBuffer<T> out(static_cast<size_t>(M * N));
  if (accumulate) out.upload(dev(old));
  peft::testing::cuda_require(cudaDeviceSynchronize(), "buffer setup");
  kc::TcSegment segs[2];
  auto operand = [](const void* ptr, bool b16, int64_t ld, bool k_inner) {
    kc::TcOperand o;
    o.ptr = ptr;
    o.bf16 = b16;
    o.ld = ld;
    o.k_inner = k_inner;
    return o;
  };
  segs[0] = {operand(da0.get(), bf16, lda, true), operand(db0.get(), bf16, ldb, false), K0, true};
  segs[1] = {operand(da1.get(), bf16, lda1, true), operand(db1.get(), bf16, ldb, false), K1, false};
  kc::TcEpilogue ep;
  ep.out = out.get();
  ep.out_bf16 = bf16;
  ep.ldc = N;
  ep.alpha = alpha;
  ep.bias = dbias.get();
  ep.bias_bf16 = bf16;
  ep.accumulate = accumulate;
  kc::tc_gemm(bf16 ? kc::TcMath::BF16 : kc::TcMath::TF32, M, N, segs, 2, kc::TcDropout{p, seed, 0}, ep, nullptr);
  const std::vector<T> got = out.download();
  check_scaled(to_floats(got), ref, bf16 ? 3e-2 : 1e-2, "tc_gemm");
}
}  // namespace

TEST_CASE("tc_gemm directly: partial 16-byte chunks at the K and N edges, mask, bias, alpha, accumulate",
          "[cuda][lora][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  // lda 40 (a multiple of 16 bytes in both dtypes): the pipelined kernel; 41: the simple one.
  for (int64_t lda : {40, 41})
    for (bool acc : {false, true}) {
      run_tc_gemm_case<uint16_t>(true, lda, acc);
      run_tc_gemm_case<float>(false, lda, acc);
    }
}

using SwitchGuard = peft::testing::CudaSwitchGuard;

TEST_CASE("lora_linear on CUDA takes the fused kernels: autograd, 3-D input, trainable or frozen W, eval mode",
          "[cuda][lora][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  const Device d = Device::cuda(0);
  SwitchGuard guard;
  cuda::set_lora_path(cuda::LoraCudaPath::Wmma);
  struct Variant {
    bool bf16, train_base, bias, train_x;
  };
  // Trainable W and b (dW / db through cuBLAS); then LoRA training proper: W frozen, no bias, x
  // without grad (only dA, dB asked for).
  for (const Variant v : {Variant{false, true, true, true}, Variant{true, true, true, true},
                          Variant{false, false, false, false}, Variant{true, false, false, false}}) {
    INFO((v.bf16 ? "BF16" : "TF32") << (v.train_base ? ", W and b trainable" : ", W frozen, no bias, x no grad"));
    cuda::set_allow_tf32(!v.bf16);
    const DType dt = v.bf16 ? DType::BF16 : DType::F32;
    const int64_t in = 40, out = 33, r = 8;
    const double p = 0.1, s = 1.5;
    const Case c{v.bf16, 2 * 19, in, out, r, p};
    const Inputs h = make_inputs(c, 7);
    std::vector<Tensor> cpu = {host(h.x, {2, 19, in}), host(h.w, {out, in}),
                               v.bias ? host(h.b, {out}) : Tensor(), host(h.A, {r, in}), host(h.B, {out, r})};
    const bool grad[] = {v.train_x, v.train_base, v.train_base && v.bias, true, true};
    std::vector<Tensor> gpu;
    for (size_t i = 0; i < cpu.size(); ++i) {
      if (!cpu[i].defined()) {
        gpu.emplace_back();
        continue;
      }
      if (grad[i]) cpu[i].requires_grad_();
      gpu.push_back(cpu[i].to(d).to(dt).detach());
      if (grad[i]) gpu.back().requires_grad_();
    }
    Generator gen(99);
    Tensor y = lora_linear(gpu[0], gpu[1], gpu[2], gpu[3], gpu[4], s, p, true, &gen);
    CHECK(y.dtype() == dt);
    Tensor up = host(h.dy, {2, 19, out});
    y.backward(up.to(d).to(dt));
    std::vector<uint8_t> keep(static_cast<size_t>(cpu[0].numel()));
    kernels::cpu::dropout_philox_mask(cpu[0].numel(), p, Generator(99).next_u64(), 0, keep.data());
    std::vector<float> m(keep.size());
    for (size_t i = 0; i < keep.size(); ++i) m[i] = keep[i] ? static_cast<float>(1.0 / (1.0 - p)) : 0.f;
    Tensor ref = add(linear(cpu[0], cpu[1], cpu[2]),
                     mul(linear(linear(mul(cpu[0], host(m, cpu[0].shape())), cpu[3]), cpu[4]), s));
    ref.backward(up);
    const double tol = v.bf16 ? 3e-2 : 1e-2;
    auto cmp = [&](const Tensor& g, const Tensor& c2, const std::string& what) {
      REQUIRE(g.defined());
      REQUIRE(g.dtype() == dt);
      const std::vector<double> rv = c2.to_vector<double>();
      check_scaled(g.to(DType::F32).to(Device::cpu()).to_vector<float>(), rv, tol, what);
    };
    cmp(y, ref, "forward");
    const char* names[] = {"dx", "dW", "db", "dA", "dB"};
    for (size_t i = 0; i < cpu.size(); ++i) {
      if (grad[i]) cmp(gpu[i].grad(), cpu[i].grad(), names[i]);
      else if (gpu[i].defined()) CHECK_FALSE(gpu[i].grad().defined());
    }
    // Eval mode: no dropout, nothing drawn from the Generator; the cuBLAS chain agrees.
    NoGradGuard ng;
    Generator g2(5);
    Tensor ye = lora_linear(gpu[0], gpu[1], gpu[2], gpu[3], gpu[4], s, p, false, &g2);
    CHECK(g2.next_u64() == Generator(5).next_u64());
    Tensor re = add(linear(cpu[0], cpu[1], cpu[2]), mul(linear(linear(cpu[0], cpu[3]), cpu[4]), s));
    cmp(ye, re, "eval forward");
    cuda::set_lora_fused(false);
    cmp(lora_linear(gpu[0], gpu[1], gpu[2], gpu[3], gpu[4], s, p, false), re, "eval forward, cuBLAS chain");
    cuda::set_lora_path(cuda::LoraCudaPath::Auto);
    cmp(lora_linear(gpu[0], gpu[1], gpu[2], gpu[3], gpu[4], s, p, false), re, "eval forward, Auto");
    cuda::set_lora_path(cuda::LoraCudaPath::Wmma);
  }
}

TEST_CASE("tc_gemm and the fused launchers refuse bad arguments before touching the device", "[cuda][lora]") {
  namespace kc = peft::kernels::cuda;
  float dummy[4] = {};
  kc::TcSegment seg;
  seg.a.ptr = dummy;
  seg.a.ld = 2;
  seg.b.ptr = dummy;
  seg.b.ld = 2;
  seg.K = 2;
  kc::TcEpilogue ep;
  ep.out = dummy;
  ep.ldc = 2;
  const kc::TcDropout none{};
  auto go = [&](int64_t M, int64_t N, const kc::TcSegment* s, int n, const kc::TcDropout& dr, const kc::TcEpilogue& e) {
    kc::tc_gemm(kc::TcMath::TF32, M, N, s, n, dr, e, nullptr);
  };
  CHECK_THROWS_WITH(go(-1, 2, &seg, 1, none, ep), Contains("negative size"));
  kc::TcSegment three[3] = {seg, seg, seg};
  CHECK_THROWS_WITH(go(2, 2, three, 3, none, ep), Contains("3 segments, at most 2"));
  CHECK_THROWS_WITH(go(2, 2, &seg, 1, kc::TcDropout{1.0, 0, 0}, ep), Contains("must be in [0, 1)"));
  kc::TcSegment bad = seg;
  bad.a.ld = 1;
  CHECK_THROWS_WITH(go(2, 2, &bad, 1, none, ep), Contains("leading dimension 1, needs at least 2"));
  bad = seg;
  bad.b.ptr = nullptr;
  CHECK_THROWS_WITH(go(2, 2, &bad, 1, none, ep), Contains("operand b is a null pointer"));
  kc::TcSegment masked[2] = {seg, seg};
  masked[1].mask_result = true;
  CHECK_THROWS_WITH(go(2, 2, masked, 2, none, ep), Contains("only segment 0 may mask"));
  kc::TcEpilogue no_out = ep;
  no_out.out = nullptr;
  CHECK_THROWS_WITH(go(2, 2, &seg, 1, none, no_out), Contains("null output"));
  kc::TcEpilogue narrow = ep;
  narrow.ldc = 1;
  CHECK_THROWS_WITH(go(2, 2, &seg, 1, none, narrow), Contains("output leading dimension 1 < 2"));
  CHECK_NOTHROW(go(0, 2, &seg, 1, none, no_out));  // nothing to compute, nothing launched

  const Device d = Device::cuda(0);
  CHECK_THROWS_WITH(cuda_ops::lora_fused_forward(2, 2, 2, 1, dummy, dummy, nullptr, dummy, dummy, 1.0, 0.0, 0, dummy,
                                                 dummy, DType::F64, d),
                    Contains("dtype F64 is not supported"));
  CHECK_THROWS_WITH(cuda_ops::lora_fused_backward(2, -2, 2, 1, dummy, dummy, dummy, dummy, dummy, dummy, 1.0, 0.0, 0,
                                                  dummy, dummy, dummy, dummy, DType::F32, d),
                    Contains("negative size"));
  CHECK_THROWS_WITH(cuda_ops::lora_fused_forward(2, 2, 2, 1, dummy, dummy, nullptr, dummy, dummy, 1.0, 1.0, 0, dummy,
                                                 dummy, DType::F32, d),
                    Contains("must be in [0, 1)"));
}

TEST_CASE("the pipelined tensor-core kernel takes exactly the aligned, conversion-free products", "[cuda][lora]") {
  // Host-side decision (no GPU needed): which products of the fused LoRA path the pipelined
  // kernel serves. An unsuitable product it took would read misaligned 16-byte chunks or skip a
  // conversion, scale or mask; one it refused only runs slower.
  namespace kc = peft::kernels::cuda;
  alignas(16) static float buf[64];
  auto op = [&](bool bf16, int64_t ld, bool k_inner) {
    kc::TcOperand o;
    o.ptr = buf;
    o.bf16 = bf16;
    o.ld = ld;
    o.k_inner = k_inner;
    return o;
  };
  auto params = [&](kc::TcOperand a0, kc::TcOperand b0, kc::TcOperand a1, kc::TcOperand b1) {
    kc::tc_detail::Params P{};
    P.M = P.N = 100;
    P.nseg = 2;
    P.segs[0].a = a0;
    P.segs[0].b = b0;
    P.segs[0].K = 8;
    P.segs[1].a = a1;
    P.segs[1].b = b1;
    P.segs[1].K = 8;
    return P;
  };
  using kc::TcMath;
  // The forward's y = x·Wᵀ + us·Bᵀ with in = 4096, r = 16: BF16 and TF32.
  CHECK(kc::tc_detail::pipelined_eligible(TcMath::BF16, params(op(true, 4096, true), op(true, 4096, true),
                                                                 op(true, 16, true), op(true, 16, true))));
  CHECK(kc::tc_detail::pipelined_eligible(TcMath::TF32, params(op(false, 4096, true), op(false, 4096, true),
                                                                 op(false, 16, true), op(false, 16, true))));
  // dX = mask ⊙ (dU·A) + dY·W: b operands not k-inner, both segments alike.
  CHECK(kc::tc_detail::pipelined_eligible(TcMath::BF16, params(op(true, 16, true), op(true, 4096, false),
                                                                 op(true, 4096, true), op(true, 4096, false))));
  // Refused: a leading dimension of 12 BF16 elements (24 bytes), r = 1, an F32 operand in a BF16
  // product, a scale or dropout on load, a transposed a, mixed b orientations, a misaligned pointer.
  const kc::TcOperand good = op(true, 64, true);
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, params(good, good, op(true, 12, true), good)));
  CHECK_FALSE(
      kc::tc_detail::pipelined_eligible(TcMath::BF16, params(good, good, op(true, 1, true), op(true, 1, true))));
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, params(good, good, op(false, 64, true), good)));
  CHECK(kc::tc_detail::pipelined_eligible(TcMath::TF32, params(op(false, 12, true), op(false, 12, true),
                                                                 op(false, 12, true), op(false, 12, true))));
  kc::TcOperand scaled = good, dropped = good, misaligned = good;
  scaled.scale = 2.f;
  dropped.dropout = true;
  misaligned.ptr = reinterpret_cast<const char*>(buf) + 2;
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, params(good, good, scaled, good)));
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, params(dropped, good, good, good)));
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, params(good, good, good, misaligned)));
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, params(op(true, 64, false), good, good, good)));
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, params(good, good, good, op(true, 64, false))));
  kc::tc_detail::Params none{};
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, none));
  // Narrow products (dU and us: N = r <= 64) stay on the simple kernel's 64-wide tiles.
  kc::tc_detail::Params narrow = params(good, good, good, good);
  narrow.N = 64;
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, narrow));
  narrow.N = 65;
  CHECK(kc::tc_detail::pipelined_eligible(TcMath::BF16, narrow));
  narrow.M = 64;
  CHECK_FALSE(kc::tc_detail::pipelined_eligible(TcMath::BF16, narrow));
}
#endif
