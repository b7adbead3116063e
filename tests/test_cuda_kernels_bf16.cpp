// The CUDA kernels' BF16 instantiations (kernels/cuda/bf16.cuh: BF16 storage, F32 math) against
// the CPU's F32 kernels on the same BF16-rounded inputs, at the launcher level: GPU outputs start
// poisoned (0xFFFF, a BF16 NaN) and are compared over their whole storage against a CPU copy
// poisoned as NaN, so unwritten and stray elements both fail (tests/cuda_kernel_util.h).
// Tolerance: one BF16 rounding per output (2^-9 relative) on O(1) values: atol 1e-2, rtol 2e-2.
// The embedding case pins that the scatter-add accumulates in F32: with 512 repeats of one id a
// BF16 accumulator would be off by far more than one final rounding.
// Without a GPU every case prints "skipped: no CUDA device" and passes.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <peft/peft.h>

#include "cuda_kernel_util.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/softmax.h"

#ifdef PEFT_WITH_CUDA
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/norm.cuh"
#include "kernels/cuda/softmax.cuh"
#endif

using namespace peft::testing;
namespace cpu = peft::kernels::cpu;

#ifdef PEFT_WITH_CUDA
namespace gpu = peft::kernels::cuda;
using gpu::Bf16;

namespace {

const cudaStream_t kStream = nullptr;  // the legacy default stream: DeviceBuffer copies order after it
constexpr Tol kOne{1e-2, 2e-2};

// Random values rounded to BF16: the BF16 bits, and the same values as floats.
struct Data {
  std::vector<Bf16> bits;
  std::vector<float> vals;
};
Data bf16_data(size_t n, uint64_t seed, bool positive = false) {
  Data d;
  for (float v : random_vec<float>(n, seed, positive)) {
    const uint16_t b = peft::float_to_bf16(v);
    d.bits.push_back(Bf16{b});
    d.vals.push_back(peft::bf16_to_float(b));
  }
  return d;
}

std::vector<float> widen(const std::vector<Bf16>& v) {
  std::vector<float> out;
  out.reserve(v.size());
  for (Bf16 b : v) out.push_back(peft::bf16_to_float(b.bits));
  return out;
}

struct Strided {
  const char* name;
  Dims shape, os, as, bs;
};
std::vector<Strided> strided_cases() {
  const Dims s1023{1023}, s57{5, 7}, s357{3, 5, 7};
  return {{"1023 contiguous", s1023, row_major(s1023), row_major(s1023), row_major(s1023)},
          {"5x7 a column-major, out and b sliced", s57, sliced(s57, 2), col_major(s57), sliced(s57, 3)},
          {"3x5x7 b broadcast on dims 0 and 2", s357, row_major(s357), row_major(s357),
           bcast(row_major(s357), {0, 2})}};
}

}  // namespace

TEST_CASE("cuda BF16 unary and binary kernels compute in F32 and round once", "[cuda][kernels][bf16]") {
  if (!cuda_ready()) return;
  const cpu::UnaryOp unary_ops[] = {cpu::UnaryOp::Neg,  cpu::UnaryOp::Exp,     cpu::UnaryOp::Abs,
                                    cpu::UnaryOp::Relu, cpu::UnaryOp::Sigmoid, cpu::UnaryOp::Tanh,
                                    cpu::UnaryOp::GeluErf, cpu::UnaryOp::GeluTanh};
  const cpu::BinaryOp binary_ops[] = {cpu::BinaryOp::Add, cpu::BinaryOp::Sub, cpu::BinaryOp::Mul,
                                      cpu::BinaryOp::Maximum, cpu::BinaryOp::GeluErfBackward,
                                      cpu::BinaryOp::SigmoidBackward, cpu::BinaryOp::TanhBackward};
  for (const Strided& c : strided_cases()) {
    const size_t no = storage(c.shape, c.os), na = storage(c.shape, c.as), nb = storage(c.shape, c.bs);
    const Data a = bf16_data(na, 1), b = bf16_data(nb, 2);
    DeviceBuffer<Bf16> da(a.bits), db(b.bits), dout(no);
    for (cpu::UnaryOp op : unary_ops) {
      std::vector<float> want = poisoned<float>(no);
      cpu::unary<float>(op, c.shape, want.data(), c.os, a.vals.data(), c.as);
      dout.poison();
      gpu::unary<Bf16>(op, c.shape, dout.get(), c.os, da.get(), c.as, kStream);
      check_close(widen(dout.download()), want, kOne,
                  std::string("unary ") + std::to_string(static_cast<int>(op)) + " on " + c.name);
    }
    for (cpu::BinaryOp op : binary_ops) {
      std::vector<float> want = poisoned<float>(no);
      cpu::binary<float>(op, c.shape, want.data(), c.os, a.vals.data(), c.as, b.vals.data(), c.bs);
      dout.poison();
      gpu::binary<Bf16>(op, c.shape, dout.get(), c.os, da.get(), c.as, db.get(), c.bs, kStream);
      check_close(widen(dout.download()), want, kOne,
                  std::string("binary ") + std::to_string(static_cast<int>(op)) + " on " + c.name);
    }
    std::vector<float> want = poisoned<float>(no);
    cpu::affine<float>(c.shape, want.data(), c.os, a.vals.data(), c.as, -1.5f, 0.25f);
    dout.poison();
    gpu::affine<Bf16>(c.shape, dout.get(), c.os, da.get(), c.as, -1.5f, 0.25f, kStream);
    check_close(widen(dout.download()), want, kOne, std::string("affine on ") + c.name);
  }
}

TEST_CASE("cuda BF16 fill stores the given bits and sum_reduce adds into a BF16 output", "[cuda][kernels][bf16]") {
  if (!cuda_ready()) return;
  const Dims shape{33, 31};
  const Data a = bf16_data(33 * 31, 3);
  DeviceBuffer<Bf16> da(a.bits), dout(31);
  const Bf16 third{peft::float_to_bf16(1.f / 3.f)};
  gpu::fill<Bf16>({31}, dout.get(), {1}, third, kStream);
  for (Bf16 v : dout.download()) CHECK(v.bits == third.bits);
  // out (1, 31) += column sums (dim 0 reduced, stride 0 in out).
  std::vector<float> want(31, peft::bf16_to_float(third.bits));
  cpu::sum_reduce<float>(shape, want.data(), {0, 1}, a.vals.data(), row_major(shape));
  gpu::sum_reduce<Bf16>(shape, dout.get(), {0, 1}, da.get(), row_major(shape), kStream);
  check_close(widen(dout.download()), want, kOne, "sum_reduce over dim 0 into a filled BF16 output");
}

TEST_CASE("cuda BF16 softmax / log_softmax match the F32 CPU kernels", "[cuda][kernels][bf16]") {
  if (!cuda_ready()) return;
  struct Case {
    int64_t outer, D, inner;
  };
  for (const Case c : {Case{7, 300, 1}, Case{3, 5, 4}}) {
    const size_t n = static_cast<size_t>(c.outer * c.D * c.inner);
    const Data x = bf16_data(n, 4), dy = bf16_data(n, 5);
    for (bool log : {false, true}) {
      const std::string what = std::string(log ? "log_softmax" : "softmax") + " (" + std::to_string(c.outer) + ", " +
                               std::to_string(c.D) + ", " + std::to_string(c.inner) + ")";
      std::vector<float> y(n), dx(n);
      cpu::softmax_forward<float>(c.outer, c.D, c.inner, x.vals.data(), y.data(), log);
      DeviceBuffer<Bf16> dxin(x.bits), dyout(n), ddy(dy.bits), ddx(n);
      gpu::softmax_forward<Bf16>(c.outer, c.D, c.inner, dxin.get(), dyout.get(), log, kStream);
      const std::vector<Bf16> y16 = dyout.download();
      check_close(widen(y16), y, kOne, what + " forward");
      // Backward from the GPU's own BF16 y, so both sides see the same saved output.
      const std::vector<float> y16f = widen(y16);
      cpu::softmax_backward<float>(c.outer, c.D, c.inner, y16f.data(), dy.vals.data(), dx.data(), log);
      gpu::softmax_backward<Bf16>(c.outer, c.D, c.inner, dyout.get(), ddy.get(), ddx.get(), log, kStream);
      check_close(widen(ddx.download()), dx, kOne, what + " backward");
    }
  }
}

TEST_CASE("cuda BF16 layer_norm writes F32 statistics and BF16 outputs", "[cuda][kernels][bf16]") {
  if (!cuda_ready()) return;
  const int64_t R = 5, M = 300;
  const Data x = bf16_data(static_cast<size_t>(R * M), 6), w = bf16_data(M, 7), b = bf16_data(M, 8);
  std::vector<float> y(static_cast<size_t>(R * M)), mean(R), rstd(R);
  cpu::layer_norm_forward<float>(R, M, 1e-5f, x.vals.data(), w.vals.data(), b.vals.data(), y.data(), mean.data(),
                                 rstd.data());
  DeviceBuffer<Bf16> dx(x.bits), dw(w.bits), db(b.bits), dy(static_cast<size_t>(R * M));
  DeviceBuffer<float> dmean(R), drstd(R);
  gpu::layer_norm_forward<Bf16>(R, M, 1e-5f, dx.get(), dw.get(), db.get(), dy.get(), dmean.get(), drstd.get(),
                                kStream);
  check_close(widen(dy.download()), y, kOne, "layer_norm y");
  // The statistics never pass through BF16: F32 accuracy.
  check_close(dmean.download(), mean, Tol{1e-5, 1e-4}, "layer_norm mean (F32)");
  check_close(drstd.download(), rstd, Tol{1e-5, 1e-4}, "layer_norm rstd (F32)");
}

TEST_CASE("cuda BF16 embedding backward accumulates repeated ids in F32", "[cuda][kernels][bf16]") {
  if (!cuda_ready()) return;
  const int64_t n = 512, dim = 9, V = 4;
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i % 8 == 0 ? 3 : 1;  // row 1 gets 448 adds
  const Data dy = bf16_data(static_cast<size_t>(n * dim), 9, true);  // positive: sums grow, rounding shows
  std::vector<float> want = poisoned<float>(static_cast<size_t>(V * dim));
  cpu::embedding_backward<float>(n, dim, V, ids.data(), dy.vals.data(), want.data(), 0);
  DeviceBuffer<int64_t> dids(ids);
  DeviceBuffer<Bf16> ddy(dy.bits), ddw(static_cast<size_t>(V * dim));
  gpu::embedding_backward<Bf16>(n, dim, V, dids.get(), ddy.get(), ddw.get(), 0, nullptr, kStream);
  // One rounding of the F32 sum: within half a BF16 ulp (2^-9 relative) of the CPU's sum.
  check_close(widen(ddw.download()), want, Tol{1e-6, 1.0 / 256 + 1e-4}, "embedding backward, 448 repeats of one id");
}
#else
TEST_CASE("cuda BF16 kernels need a CUDA build", "[cuda][kernels][bf16]") {
  WARN("skipped: no CUDA device (built without CUDA: PEFT_CUDA=OFF or no nvcc)");
}
#endif
