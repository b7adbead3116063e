// The CUDA elementwise, softmax / nll, embedding and dropout kernels against their CPU kernels
// (DESIGN.md decision 3; norms, pooling and the optimizer are in test_cuda_kernels_nn.cpp), and
// every launcher's argument checks. Table-driven: random inputs that are never zero, shapes with
// tails (1, 7, 1023), broadcast and non-contiguous strides; GPU outputs start as NaN
// (tests/cuda_kernel_util.h), so unwritten elements fail.
// Tolerances: F32 atol 1e-5 rtol 1e-4, F64 atol 1e-12 rtol 1e-10, except where a case says why.
// Without a GPU every case prints "skipped: no CUDA device" and passes; the launchers' argument
// checks (which throw before touching the device) run for real in any CUDA build.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <peft/peft.h>

#include "cuda_kernel_util.h"
#include "kernels/cpu/dropout_philox.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/pool.h"
#include "kernels/cpu/softmax.h"

#ifdef PEFT_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/dropout.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/index_check.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/pool.cuh"
#include "kernels/cuda/softmax.cuh"
#endif

using namespace peft::testing;
namespace cpu = peft::kernels::cpu;

#ifdef PEFT_WITH_CUDA
namespace gpu = peft::kernels::cuda;

namespace {

const cudaStream_t kStream = nullptr;  // the legacy default stream: DeviceBuffer copies order after it

// ---------------------------------------------------------------------------- elementwise table

struct EwCase {
  const char* name;
  Dims shape, os, as, bs;  // out, a, b strides
};

std::vector<EwCase> ew_cases() {
  const Dims s1{1}, s7{7}, s1023{1023}, s357{3, 5, 7}, s416{4, 1, 6}, s57{5, 7}, s2345{2, 3, 4, 5}, s3331{33, 31};
  return {
      {"scalar", s1, row_major(s1), row_major(s1), row_major(s1)},
      {"7 contiguous", s7, row_major(s7), row_major(s7), row_major(s7)},
      {"1023 contiguous", s1023, row_major(s1023), row_major(s1023), row_major(s1023)},
      {"1023, b scalar-broadcast", s1023, row_major(s1023), row_major(s1023), bcast(row_major(s1023), {0})},
      {"3x5x7 contiguous", s357, row_major(s357), row_major(s357), row_major(s357)},
      {"3x5x7 a broadcast on dim 1, b on all", s357, row_major(s357), bcast(row_major(s357), {1}),
       bcast(row_major(s357), {0, 1, 2})},
      {"4x1x6 b broadcast on dim 0", s416, row_major(s416), row_major(s416), bcast(row_major(s416), {0})},
      {"5x7 a column-major, b and out sliced", s57, sliced(s57, 2), col_major(s57), sliced(s57, 3)},
      {"2x3x4x5 out column-major, b broadcast on 0 and 2", s2345, col_major(s2345), row_major(s2345),
       bcast(row_major(s2345), {0, 2})},
      {"33x31 a sliced by 3, b column-major", s3331, row_major(s3331), sliced(s3331, 3), col_major(s3331)},
      // 8 dims that cannot merge (a column-major against row-major out): the full Indexer.
      {"8 unmergeable dims", Dims(8, 2), row_major(Dims(8, 2)), col_major(Dims(8, 2)), row_major(Dims(8, 2))},
  };
}

const cpu::UnaryOp kUnary[] = {cpu::UnaryOp::Neg,  cpu::UnaryOp::Exp,     cpu::UnaryOp::Log,  cpu::UnaryOp::Sqrt,
                               cpu::UnaryOp::Abs,  cpu::UnaryOp::Relu,    cpu::UnaryOp::Sigmoid,
                               cpu::UnaryOp::Tanh, cpu::UnaryOp::GeluErf, cpu::UnaryOp::GeluTanh};
const cpu::BinaryOp kBinary[] = {
    cpu::BinaryOp::Add,          cpu::BinaryOp::Sub,             cpu::BinaryOp::Mul,
    cpu::BinaryOp::Div,          cpu::BinaryOp::Pow,             cpu::BinaryOp::Maximum,
    cpu::BinaryOp::ReluBackward, cpu::BinaryOp::GeluErfBackward, cpu::BinaryOp::GeluTanhBackward,
    cpu::BinaryOp::SigmoidBackward, cpu::BinaryOp::TanhBackward};

bool needs_positive(cpu::UnaryOp op) { return op == cpu::UnaryOp::Log || op == cpu::UnaryOp::Sqrt; }

template <class T>
void run_unary_table() {
  for (const EwCase& c : ew_cases()) {
    for (cpu::UnaryOp op : kUnary) {
      const auto a = random_vec<T>(storage(c.shape, c.as), 11, needs_positive(op));
      auto ref = poisoned<T>(storage(c.shape, c.os));
      cpu::unary<T>(op, c.shape, ref.data(), c.os, a.data(), c.as);
      DeviceBuffer<T> da(a), dout(ref.size());
      gpu::unary<T>(op, c.shape, dout.get(), c.os, da.get(), c.as, kStream);
      check_close(dout.download(), ref, tol_of<T>(),
                  std::string("unary op ") + std::to_string(static_cast<int>(op)) + " on " + c.name);
    }
  }
}

template <class T>
void run_binary_table() {
  for (const EwCase& c : ew_cases()) {
    for (cpu::BinaryOp op : kBinary) {
      // Pow needs a positive base; Div's divisor is never near 0 (|b| >= 0.1).
      const auto a = random_vec<T>(storage(c.shape, c.as), 21, op == cpu::BinaryOp::Pow);
      const auto b = random_vec<T>(storage(c.shape, c.bs), 22);
      auto ref = poisoned<T>(storage(c.shape, c.os));
      cpu::binary<T>(op, c.shape, ref.data(), c.os, a.data(), c.as, b.data(), c.bs);
      DeviceBuffer<T> da(a), db(b), dout(ref.size());
      gpu::binary<T>(op, c.shape, dout.get(), c.os, da.get(), c.as, db.get(), c.bs, kStream);
      check_close(dout.download(), ref, tol_of<T>(),
                  std::string("binary op ") + std::to_string(static_cast<int>(op)) + " on " + c.name);
    }
  }
}

template <class T>
void run_scalar_ops_table() {
  for (const EwCase& c : ew_cases()) {
    const auto a = random_vec<T>(storage(c.shape, c.as), 31, true);
    const size_t on = storage(c.shape, c.os);
    {
      auto ref = poisoned<T>(on);
      cpu::affine<T>(c.shape, ref.data(), c.os, a.data(), c.as, T(1.7), T(-0.3));
      DeviceBuffer<T> da(a), dout(on);
      gpu::affine<T>(c.shape, dout.get(), c.os, da.get(), c.as, T(1.7), T(-0.3), kStream);
      check_close(dout.download(), ref, tol_of<T>(), std::string("affine on ") + c.name);
    }
    for (T p : {T(2), T(3), T(0.5), T(-1.5)}) {
      auto ref = poisoned<T>(on);
      cpu::pow_scalar<T>(c.shape, ref.data(), c.os, a.data(), c.as, p);
      DeviceBuffer<T> da(a), dout(on);
      gpu::pow_scalar<T>(c.shape, dout.get(), c.os, da.get(), c.as, p, kStream);
      check_close(dout.download(), ref, tol_of<T>(), std::string("pow_scalar ") + std::to_string(p) + " on " + c.name);
    }
    {
      auto ref = poisoned<T>(on);
      cpu::fill<T>(c.shape, ref.data(), c.os, T(2.5));
      DeviceBuffer<T> dout(on);
      gpu::fill<T>(c.shape, dout.get(), c.os, T(2.5), kStream);
      check_bits(dout.download(), ref, std::string("fill on ") + c.name);
    }
  }
}

// ---------------------------------------------------------------------------- sum_reduce table

struct ReduceCase {
  const char* name;
  Dims shape, os, as;  // os: stride 0 on reduced dims
};

std::vector<ReduceCase> reduce_cases() {
  return {
      {"1 -> scalar", {1}, {0}, {1}},
      {"1023 -> scalar", {1023}, {0}, {1}},
      {"2^20 + 3 -> scalar (one long block)", {(1 << 20) + 3}, {0}, {1}},
      {"37x1023 over dim 1 (block per row)", {37, 1023}, {1, 0}, row_major({37, 1023})},
      {"1023x37 over dim 0 (few kept columns)", {1023, 37}, {0, 1}, row_major({1023, 37})},
      {"64x2048 over dim 0 (thread per column)", {64, 2048}, {0, 1}, row_major({64, 2048})},
      {"3x5x7 over dims 0 and 2", {3, 5, 7}, {0, 1, 0}, row_major({3, 5, 7})},
      {"4x6x8 over nothing (out += a)", {4, 6, 8}, row_major({4, 6, 8}), row_major({4, 6, 8})},
      {"33x31 column-major a over dim 1", {33, 31}, {1, 0}, col_major({33, 31})},
      {"7x9 a broadcast on dim 0, over dim 0", {7, 9}, {0, 1}, {0, 1}},
  };
}

template <class T>
void run_reduce_table() {
  // F32 atol 1e-4: the CPU adds rows into out in float when the reduced dims are outer ones.
  const Tol tol = sizeof(T) == 4 ? Tol{1e-4, 1e-4} : Tol{1e-12, 1e-10};
  for (const ReduceCase& c : reduce_cases()) {
    const auto a = random_vec<T>(storage(c.shape, c.as), 41);
    const auto out0 = random_vec<T>(storage(c.shape, c.os), 42);  // += onto non-zero values
    auto ref = out0;
    cpu::sum_reduce<T>(c.shape, ref.data(), c.os, a.data(), c.as);
    DeviceBuffer<T> da(a), dout(out0);
    gpu::sum_reduce<T>(c.shape, dout.get(), c.os, da.get(), c.as, kStream);
    check_close(dout.download(), ref, tol, std::string("sum_reduce ") + c.name);
  }
}

}  // namespace
#endif  // PEFT_WITH_CUDA

TEST_CASE("cuda unary ops match the CPU on strided and broadcast operands", "[cuda][kernels][elementwise]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  run_unary_table<float>();
  run_unary_table<double>();
#endif
}

TEST_CASE("cuda binary ops and backward helpers match the CPU", "[cuda][kernels][elementwise]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  run_binary_table<float>();
  run_binary_table<double>();
#endif
}

TEST_CASE("cuda affine, pow_scalar and fill match the CPU", "[cuda][kernels][elementwise]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  run_scalar_ops_table<float>();
  run_scalar_ops_table<double>();
  // fill<int64_t> and a grid larger than the launch cap (grid-stride loop): 2^24 + 1001 elements.
  const Dims shape{(int64_t(1) << 24) + 1001};
  std::vector<int64_t> ref(static_cast<size_t>(shape[0]), -5);
  cpu::fill<int64_t>(shape, ref.data(), {1}, int64_t(1) << 40);
  DeviceBuffer<int64_t> dout(ref.size());
  gpu::fill<int64_t>(shape, dout.get(), {1}, int64_t(1) << 40, kStream);
  check_bits(dout.download(), ref, "fill<int64_t> over 2^24 + 1001 elements");
  const auto a = random_vec<float>(ref.size(), 5);
  std::vector<float> fref(a.size());
  cpu::unary<float>(cpu::UnaryOp::Neg, shape, fref.data(), {1}, a.data(), {1});
  DeviceBuffer<float> da(a), dneg(a.size());
  gpu::unary<float>(cpu::UnaryOp::Neg, shape, dneg.get(), {1}, da.get(), {1}, kStream);
  check_bits(dneg.download(), fref, "neg over 2^24 + 1001 elements");
#endif
}

TEST_CASE("cuda sum_reduce matches the CPU for every reduced / kept layout", "[cuda][kernels][elementwise]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  run_reduce_table<float>();
  run_reduce_table<double>();
#endif
}

TEST_CASE("cuda copy_convert matches the CPU bit for bit for all 25 dtype pairs", "[cuda][kernels][elementwise]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  const Dims shape{3, 5, 7};
  const Dims ss = col_major(shape), ds = sliced(shape, 2);
  const size_t sn = storage(shape, ss), dn = storage(shape, ds);
  const size_t esize[] = {4, 8, 8, 2, 2};
  for (int src = 0; src < 5; ++src) {
    const auto vals = random_vec<double>(sn, 50 + static_cast<uint64_t>(src), false, 0.1, 300.0);
    for (int dst = 0; dst < 5; ++dst) {
      // Source bytes: finite values of each dtype; I64 -> I64 also gets values beyond 2^53, which
      // must move as bits (a trip through double would round them).
      std::vector<uint8_t> sbytes(sn * esize[src]);
      for (size_t i = 0; i < sn; ++i) {
        uint8_t* p = sbytes.data() + i * esize[src];
        const double v = vals[i];
        const float f = static_cast<float>(v);
        const int64_t k = static_cast<int64_t>(v) + (dst == 2 && i % 3 == 0 ? (int64_t(1) << 53) + 1 : 0);
        const uint16_t h = src == 3 ? peft::float_to_bf16(f) : peft::float_to_f16(f);
        if (src == 0) std::memcpy(p, &f, 4);
        if (src == 1) std::memcpy(p, &v, 8);
        if (src == 2) std::memcpy(p, &k, 8);
        if (src >= 3) std::memcpy(p, &h, 2);
      }
      auto ref = poisoned<uint8_t>(dn * esize[dst]);
      cpu::copy_convert(shape, ref.data(), dst, ds, sbytes.data(), src, ss);
      DeviceBuffer<uint8_t> dsrc(sbytes), dout(ref.size());
      gpu::copy_convert(shape, dout.get(), dst, ds, dsrc.get(), src, ss, kStream);
      check_bits(dout.download(), ref, "copy_convert " + std::to_string(src) + " -> " + std::to_string(dst));
    }
  }
#endif
}

TEST_CASE("cuda softmax and log_softmax forward and backward match the CPU", "[cuda][kernels][softmax]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  struct C { int64_t outer, D, inner; };
  const C cases[] = {{1, 1, 1}, {3, 7, 1}, {7, 1023, 1}, {2, 2000, 1}, {64, 50, 1},
                     {2, 5, 7}, {3, 1023, 4}, {1, 1, 33}, {4, 3, 300}};
  auto run = [&](auto tag) {
    using T = decltype(tag);
    for (const C& c : cases) {
      const size_t n = static_cast<size_t>(c.outer * c.D * c.inner);
      auto x = random_vec<T>(n, 61, false, 0.1, 6.0);
      const auto dy = random_vec<T>(n, 62);
      for (bool log : {false, true}) {
        const std::string what = std::string(log ? "log_softmax" : "softmax") + " (" + std::to_string(c.outer) +
                                 ", " + std::to_string(c.D) + ", " + std::to_string(c.inner) + ")";
        std::vector<T> y(n), dx(n);
        cpu::softmax_forward<T>(c.outer, c.D, c.inner, x.data(), y.data(), log);
        cpu::softmax_backward<T>(c.outer, c.D, c.inner, y.data(), dy.data(), dx.data(), log);
        DeviceBuffer<T> dxin(x), dyout(n), dyv(y), dgrad(dy), ddx(n);
        gpu::softmax_forward<T>(c.outer, c.D, c.inner, dxin.get(), dyout.get(), log, kStream);
        check_close(dyout.download(), y, tol_of<T>(), what + " forward");
        gpu::softmax_backward<T>(c.outer, c.D, c.inner, dyv.get(), dgrad.get(), ddx.get(), log, kStream);
        check_close(ddx.download(), dx, tol_of<T>(), what + " backward");
      }
    }
  };
  run(float{});
  run(double{});
#endif
}

TEST_CASE("cuda nll_loss forward and backward match core's loop and report bad targets", "[cuda][kernels][softmax]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  const int64_t N = 37, C = 11, ignore = -100;
  std::vector<int64_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[static_cast<size_t>(i)] = i % 6 == 5 ? ignore : (i * 7) % C;
  const auto logp = random_vec<float>(static_cast<size_t>(N * C), 71);
  const auto g = random_vec<float>(static_cast<size_t>(N), 72);
  // core/ops_nn.cpp's loops, as the reference.
  std::vector<float> per(N), d_red(static_cast<size_t>(N * C), 0.f), d_none(static_cast<size_t>(N * C), 0.f);
  const double factor = 1.0 / 31;  // 31 targets are not ignored
  for (int64_t i = 0; i < N; ++i) {
    const int64_t ti = t[static_cast<size_t>(i)];
    per[static_cast<size_t>(i)] = ti == ignore ? 0.f : -logp[static_cast<size_t>(i * C + ti)];
    if (ti == ignore) continue;
    d_red[static_cast<size_t>(i * C + ti)] = -(g[0] * static_cast<float>(factor));
    d_none[static_cast<size_t>(i * C + ti)] = -g[static_cast<size_t>(i)];
  }
  DeviceBuffer<float> dlogp(logp), dg(g), dper(static_cast<size_t>(N)), dgrad(static_cast<size_t>(N * C));
  DeviceBuffer<int64_t> dt(t), bad(1);
  gpu::index_error_reset(bad.get(), kStream);
  gpu::nll_loss_forward<float>(N, C, dlogp.get(), dt.get(), ignore, dper.get(), bad.get(), kStream);
  check_bits(dper.download(), per, "nll forward");
  gpu::nll_loss_backward<float>(N, C, dt.get(), ignore, dg.get(), true, factor, dgrad.get(), bad.get(), kStream);
  check_close(dgrad.download(), d_red, tol_of<float>(), "nll backward (mean)");
  gpu::nll_loss_backward<float>(N, C, dt.get(), ignore, dg.get(), false, 1.0, dgrad.get(), bad.get(), kStream);
  check_bits(dgrad.download(), d_none, "nll backward (none)");
  CHECK_NOTHROW(gpu::index_error_check(bad.get(), dt.get(), C, "nll_loss", kStream));
  t[9] = -3;
  t[5] = C;  // the smallest bad position is reported
  dt.upload(t);
  gpu::nll_loss_forward<float>(N, C, dlogp.get(), dt.get(), ignore, dper.get(), bad.get(), kStream);
  CHECK_THROWS_WITH(gpu::index_error_check(bad.get(), dt.get(), C, "nll_loss", kStream),
                    Catch::Contains("nll_loss: index 11 at position 5 is out of range for 11 rows"));
#endif
}

TEST_CASE("cuda embedding gather and scatter-add match the CPU and report bad ids", "[cuda][kernels][embedding]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  const int64_t V = 13;
  for (int64_t n : {1, 37, 1023}) {
    for (int64_t dim : {1, 7, 130}) {
      for (int64_t pad : {int64_t(-1), int64_t(3)}) {
        std::vector<int64_t> ids(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = (i * 5 + i / 3) % V;  // repeats
        const auto w = random_vec<float>(static_cast<size_t>(V * dim), 81);
        const auto dy = random_vec<float>(static_cast<size_t>(n * dim), 82);
        std::vector<float> out(static_cast<size_t>(n * dim)), dw(static_cast<size_t>(V * dim));
        cpu::embedding_forward<float>(n, dim, w.data(), ids.data(), out.data());
        cpu::embedding_backward<float>(n, dim, V, ids.data(), dy.data(), dw.data(), pad);
        DeviceBuffer<float> dwt(w), ddy(dy), dout(out.size()), ddw(dw.size());
        DeviceBuffer<int64_t> dids(ids), bad(1);
        gpu::index_error_reset(bad.get(), kStream);
        const std::string what = "embedding n " + std::to_string(n) + " dim " + std::to_string(dim) + " padding " +
                                 std::to_string(pad);
        gpu::embedding_forward<float>(n, dim, V, dwt.get(), dids.get(), dout.get(), bad.get(), kStream);
        check_bits(dout.download(), out, what + " forward");
        gpu::embedding_backward<float>(n, dim, V, dids.get(), ddy.get(), ddw.get(), pad, bad.get(), kStream);
        // atomicAdd order differs from the CPU's token order: float sums of up to ~80 repeats,
        // whose rounding (either side) can reach ~4e-5 near cancellation.
        check_close(ddw.download(), dw, Tol{1e-4, 1e-4}, what + " backward");
        CHECK_NOTHROW(gpu::index_error_check(bad.get(), dids.get(), V, "embedding", kStream));
      }
    }
  }
  std::vector<int64_t> ids{1, 2, 3, 4, V, -1, 0};
  DeviceBuffer<int64_t> dids(ids), bad(1);
  DeviceBuffer<double> w(random_vec<double>(static_cast<size_t>(V * 3), 83)), out(ids.size() * 3);
  gpu::index_error_reset(bad.get(), kStream);
  gpu::embedding_forward<double>(static_cast<int64_t>(ids.size()), 3, V, w.get(), dids.get(), out.get(), bad.get(),
                                 kStream);
  const auto o = out.download();
  CHECK(o[12] == 0.0);  // the bad row reads nothing and is zero
  CHECK_THROWS_WITH(gpu::index_error_check(bad.get(), dids.get(), V, "embedding", kStream),
                    Catch::Contains("embedding: index 13 at position 4 is out of range for 13 rows"));
#endif
}

TEST_CASE("cuda dropout regenerates exactly the CPU's Philox mask", "[cuda][kernels][dropout]") {
  if (!cuda_ready()) return;
#ifdef PEFT_WITH_CUDA
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(1023), (int64_t(1) << 20) + 3}) {
    for (double p : {0.0, 0.1, 0.5, 1.0}) {
      const std::string what = "dropout n " + std::to_string(n) + " p " + std::to_string(p);
      const uint64_t seed = 0x5eed0000ull + static_cast<uint64_t>(n), offset = (uint64_t(1) << 32) + 17;
      std::vector<uint8_t> mask(static_cast<size_t>(n));
      cpu::dropout_philox_mask(n, p, seed, offset, mask.data());
      DeviceBuffer<uint8_t> dmask(mask.size());
      gpu::dropout_mask(n, p, seed, offset, dmask.get(), kStream);
      check_bits(dmask.download(), mask, what + " mask");
      const auto x = random_vec<float>(static_cast<size_t>(n), 131);
      std::vector<float> y(x.size()), dx(x.size());
      cpu::dropout_philox_forward<float>(n, p, seed, offset, x.data(), y.data());
      cpu::dropout_philox_backward<float>(n, p, seed, offset, x.data(), dx.data());
      DeviceBuffer<float> dxin(x), dyout(x.size()), ddx(x.size());
      gpu::dropout_forward<float>(n, p, seed, offset, dxin.get(), dyout.get(), kStream);
      check_bits(dyout.download(), y, what + " forward");
      gpu::dropout_backward<float>(n, p, seed, offset, dxin.get(), ddx.get(), kStream);
      check_bits(ddx.download(), dx, what + " backward");
      const auto xd = random_vec<double>(static_cast<size_t>(n), 132);
      std::vector<double> yd(xd.size());
      cpu::dropout_philox_forward<double>(n, p, seed, offset, xd.data(), yd.data());
      DeviceBuffer<double> dxd(xd);
      gpu::dropout_forward<double>(n, p, seed, offset, dxd.get(), dxd.get(), kStream);  // in place
      check_bits(dxd.download(), yd, what + " forward F64 in place");
    }
  }
#endif
}


TEST_CASE("cuda launchers reject bad arguments before touching the device", "[cuda][kernels][errors]") {
  // These checks throw before any CUDA call, so they run for real on a machine without a GPU.
#ifdef PEFT_WITH_CUDA
  float f[4] = {1, 2, 3, 4};
  int64_t i64[4] = {0, 0, 0, 0};
  CHECK_THROWS_WITH(gpu::unary<float>(cpu::UnaryOp::Neg, {2, 2}, f, {2, 1}, f, {1}, kStream),
                    Catch::Contains("operand 1 has 1 strides for a shape of rank 2"));
  CHECK_THROWS_WITH(gpu::binary<float>(cpu::BinaryOp::Add, {-1}, f, {1}, f, {1}, f, {1}, kStream),
                    Catch::Contains("negative size -1"));
  const Dims nine(9, 2);
  CHECK_THROWS_WITH(gpu::unary<float>(cpu::UnaryOp::Neg, nine, f, row_major(nine), f, col_major(nine), kStream),
                    Catch::Contains("still has 9 dims after merging"));
  CHECK_THROWS_WITH(gpu::copy_convert({1}, f, 7, {1}, f, 0, {1}, kStream), Catch::Contains("got dst 7, src 0"));
  CHECK_THROWS_WITH(gpu::sum_reduce<float>({2}, nullptr, {0}, f, {1}, kStream), Catch::Contains("null device pointer"));
  CHECK_THROWS_WITH(gpu::dropout_forward<float>(4, 1.5, 0, 0, f, f, kStream),
                    Catch::Contains("probability has to be between 0 and 1, but got 1.5"));
  CHECK_THROWS_WITH(gpu::group_norm_forward<float>(1, 6, 2, 4, 1e-5f, f, nullptr, nullptr, f, f, f, kStream),
                    Catch::Contains("6 channels cannot be split into 4 groups"));
  CHECK_THROWS_WITH(gpu::softmax_forward<float>(1, -2, 1, f, f, false, kStream), Catch::Contains("D -2"));
  CHECK_THROWS_WITH(gpu::embedding_forward<float>(1, 2, 3, nullptr, i64, f, nullptr, kStream),
                    Catch::Contains("null device pointer"));
  CHECK_THROWS_WITH(gpu::nll_loss_forward<float>(2, 0, f, i64, -100, f, nullptr, kStream),
                    Catch::Contains("C > 0, got N 2, C 0"));
  auto s = cpu::pool2d_shape(1, 1, 4, 4, 2, 2, 2, 2, 0, 0, false, true);
  s.Ho = 3;  // not what pool2d_shape says
  CHECK_THROWS_WITH(gpu::avg_pool2d_forward<float>(s, f, f, kStream), Catch::Contains("output size (3, 2)"));
  CHECK_THROWS_WITH(gpu::adaptive_avg_pool2d_forward<float>(1, 1, 0, 4, 1, 1, f, f, kStream),
                    Catch::Contains("H, W, Ho, Wo > 0"));
  gpu::AdamHyper h;
  h.beta1 = 1.0;
  CHECK_THROWS_WITH(gpu::adam_step<float>({}, h, kStream), Catch::Contains("invalid beta parameter at index 0: 1"));
  h.beta1 = 0.9;
  CHECK_THROWS_WITH(gpu::adam_step<float>({{f, f, f, f, 4, 0}}, h, kStream), Catch::Contains("has step 0"));
#else
  WARN("skipped: no CUDA device (built without CUDA: PEFT_CUDA=OFF or no nvcc)");
#endif
}
