// The cuBLASLt products (cuda_ops::gemm_fused: bias epilogue, C != D accumulation, F32 output
// from BF16 operands, transposed operands, odd sizes) and lora_linear's Auto path on CUDA (the
// merged algebra W' = W + s·B·A and the epilogue chain, with dropout, and F32 adapters on a BF16
// base), each against a float64 reference on the host: ‖gpu − ref‖ / ‖ref‖ under 1e-5 (F32),
// 3e-3 (TF32) and 1e-2 (BF16). Outputs are poisoned with NaN before each product so an unwritten
// element fails. The rule itself (lora_fast_merges) is pinned in every build.
// Without a GPU the GPU cases report "skipped: no CUDA device" and pass.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/cuda_ops.h"
#include "core/dispatch.h"
#include "cuda_kernel_util.h"
#include "peft.h"

using namespace peft;

namespace {

const Device kCuda = Device::cuda(0);

double rel_err(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g = got.to(Device::cpu()).to_vector<double>(), r = ref.to(Device::cpu()).to_vector<double>();
  REQUIRE(g.size() == r.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (!std::isfinite(g[i])) return std::numeric_limits<double>::infinity();
    num += (g[i] - r[i]) * (g[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

double tol_for(DType dt, bool tf32) { return dt == DType::BF16 ? 1e-2 : tf32 ? 3e-3 : 1e-5; }

Tensor rnd(const Shape& s, double scale, Generator& g) { return mul(Tensor::randn(s, DType::F64, &g), scale); }

using Restore = peft::testing::CudaSwitchGuard;

}  // namespace

TEST_CASE("the merge rule picks W + s·B·A when the branch's bytes exceed the merge's", "[cuda][lora]") {
  CHECK(detail::lora_fast_merges(8192, 4096, 4096, 0.0));   // the headline shape
  CHECK_FALSE(detail::lora_fast_merges(2048, 4096, 4096, 0.0));  // 2048·8192 == 4096²: not more
  CHECK(detail::lora_fast_merges(2049, 4096, 4096, 0.0));
  CHECK_FALSE(detail::lora_fast_merges(8192, 4096, 4096, 0.1));  // dropout: the mask needs the branch
  CHECK_FALSE(detail::lora_fast_merges(16, 1024, 1024, 0.0));    // a few tokens: the chain
}

TEST_CASE("gemm_fused: bias epilogue, C != D accumulation, F32 out from BF16, transposes, odd sizes",
          "[cuda][gemm][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  Restore restore;
  Generator gen(21);
  struct Case {
    DType dt, out;
    bool tf32, ta, tb, bias;
    double beta;
    int64_t M, N, K;
  };
  const std::vector<Case> cases = {
      {DType::F32, DType::F32, false, false, true, true, 0.0, 37, 53, 19},
      {DType::F32, DType::F32, true, false, true, true, 0.0, 256, 384, 512},
      {DType::BF16, DType::BF16, false, false, true, true, 0.0, 129, 200, 72},
      {DType::BF16, DType::BF16, false, false, false, false, 1.0, 64, 96, 16},
      {DType::F32, DType::F32, false, true, false, false, 0.5, 33, 40, 300},
      {DType::BF16, DType::F32, false, true, false, false, 0.0, 16, 256, 1000},  // dA-like: K = the batch
      {DType::BF16, DType::F32, false, true, false, false, 1.0, 48, 16, 777},
      {DType::F32, DType::F32, false, false, false, true, 1.0, 1, 5, 3},
  };
  for (const Case& c : cases) {
    INFO("dtype " << dtype_name(c.dt) << " out " << dtype_name(c.out) << " tf32 " << c.tf32 << " ta " << c.ta << " tb "
                  << c.tb << " bias " << c.bias << " beta " << c.beta << " M " << c.M << " N " << c.N << " K " << c.K);
    cuda::set_allow_tf32(c.tf32);
    // Stored operands: a (M, K) or (K, M); b (K, N) or (N, K); c_in (M, N); bias (N).
    Tensor a = rnd(c.ta ? Shape{c.K, c.M} : Shape{c.M, c.K}, 1.0, gen);
    Tensor b = rnd(c.tb ? Shape{c.N, c.K} : Shape{c.K, c.N}, 0.1, gen);
    Tensor cin = rnd({c.M, c.N}, 1.0, gen), bias = rnd({c.N}, 1.0, gen);
    // The reference sees the operands as the GPU does (rounded to the operand dtype).
    Tensor a_d = a.to(c.dt).to(DType::F64), b_d = b.to(c.dt).to(DType::F64);
    Tensor cin_d = cin.to(c.out).to(DType::F64), bias_d = bias.to(c.out).to(DType::F64);
    Tensor ref = matmul(c.ta ? a_d.t() : a_d, c.tb ? b_d.t() : b_d);
    ref = add(mul(ref, 0.75), mul(cin_d, c.beta));
    if (c.bias) ref = add(ref, bias_d);
    Tensor ga = a.to(c.dt).to(kCuda), gb = b.to(c.dt).to(kCuda), gc = cin.to(c.out).to(kCuda);
    Tensor gbias = bias.to(c.out).to(kCuda);
    Tensor d = Tensor::full({c.M, c.N}, std::numeric_limits<double>::quiet_NaN(), c.out).to(kCuda);
    cuda_ops::gemm_fused(c.ta, c.tb, c.M, c.N, c.K, 0.75, ga.raw_data(), c.ta ? c.M : c.K, gb.raw_data(),
                         c.tb ? c.K : c.N, c.beta, gc.raw_data(), c.N, d.raw_data(), c.N,
                         c.bias ? gbias.raw_data() : nullptr, c.dt, c.out, kCuda);
    CHECK(rel_err(d, ref) < tol_for(c.dt, c.tf32));
  }
  // Bad output dtype pairs are refused before the device is touched.
  Tensor x = Tensor::zeros({2, 2}, DType::F32).to(kCuda);
  CHECK_THROWS_WITH(cuda_ops::gemm_fused(false, false, 2, 2, 2, 1.0, x.raw_data(), 2, x.raw_data(), 2, 0.0, nullptr, 2,
                                         x.raw_data(), 2, nullptr, DType::F32, DType::BF16, kCuda),
                    Catch::Contains("output dtype"));
}

namespace {

// lora_linear on the GPU (path as set) against the F64 CPU op, forward and dX, dA, dB; W frozen.
void check_lora(int64_t N, int64_t in, int64_t out, int64_t r, DType dt, DType adt, bool tf32, Generator& gen) {
  INFO("N " << N << " in " << in << " out " << out << " r " << r << " dtype " << dtype_name(dt) << " adapters "
            << dtype_name(adt) << " tf32 " << tf32 << " path " << cuda::lora_path_name(cuda::lora_path())
            << " merges " << detail::lora_fast_merges(N, in, out, 0.0));
  cuda::set_allow_tf32(tf32);
  const double s = 2.0;
  Tensor x = rnd({N, in}, 1.0, gen), W = rnd({out, in}, 0.05, gen), b = rnd({out}, 0.1, gen);
  Tensor A = rnd({r, in}, 0.05, gen), B = rnd({out, r}, 0.05, gen), gy = rnd({N, out}, 1.0, gen);
  auto round_to = [](const Tensor& t, DType d) { return t.to(d).to(DType::F64); };
  // Reference on what the GPU holds (inputs rounded to their dtypes).
  Tensor xr = round_to(x, dt).requires_grad_(), Ar = round_to(A, adt).requires_grad_();
  Tensor Br = round_to(B, adt).requires_grad_();
  Tensor yr = lora_linear(xr, round_to(W, dt), round_to(b, dt), Ar, Br, s, 0.0, true);
  yr.backward(round_to(gy, dt));
  Tensor xg = x.to(dt).to(kCuda).requires_grad_(), Ag = A.to(adt).to(kCuda).requires_grad_();
  Tensor Bg = B.to(adt).to(kCuda).requires_grad_();
  Tensor y = lora_linear(xg, W.to(dt).to(kCuda), b.to(dt).to(kCuda), Ag, Bg, s, 0.0, true);
  y.backward(gy.to(dt).to(kCuda));
  const double tol = tol_for(dt, tf32);
  CHECK(y.dtype() == dt);
  CHECK(Ag.grad().dtype() == adt);
  CHECK(rel_err(y, yr) < tol);
  CHECK(rel_err(xg.grad(), xr.grad()) < tol);
  CHECK(rel_err(Ag.grad(), Ar.grad()) < tol);
  CHECK(rel_err(Bg.grad(), Br.grad()) < tol);
}

}  // namespace

TEST_CASE("lora_linear's Auto path (merged and chain) matches a float64 reference, gradients too",
          "[cuda][lora][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  Restore restore;
  cuda::set_lora_path(cuda::LoraCudaPath::Auto);
  Generator gen(8);
  for (const auto& [dt, tf32] : std::vector<std::pair<DType, bool>>{{DType::F32, false}, {DType::F32, true},
                                                                    {DType::BF16, false}}) {
    check_lora(300, 96, 80, 8, dt, dt, tf32, gen);  // 300·176 > 96·80: merged
    check_lora(20, 96, 80, 8, dt, dt, tf32, gen);   // chain
    check_lora(257, 130, 66, 1, dt, dt, tf32, gen);  // odd leading dimensions, r = 1
  }
  // F32 adapters on a BF16 base (autocast_adapter_dtype): BF16 products, F32 adapter gradients.
  check_lora(300, 96, 80, 8, DType::BF16, DType::F32, false, gen);
  check_lora(20, 96, 80, 8, DType::BF16, DType::F32, false, gen);
}

TEST_CASE("lora_linear's Auto path with dropout draws the Chain path's Philox mask", "[cuda][lora][gpu]") {
  if (!peft::testing::cuda_ready()) return;
  Restore restore;
  Generator data(4);
  const int64_t N = 512, in = 128, out = 64, r = 4;
  Tensor x = Tensor::randn({N, in}, DType::F32, &data).to(kCuda), W = mul(Tensor::randn({out, in}, DType::F32, &data), 0.05).to(kCuda);
  Tensor b = Tensor::randn({out}, DType::F32, &data).to(kCuda);
  Tensor A = mul(Tensor::randn({r, in}, DType::F32, &data), 0.1).to(kCuda);
  Tensor B = mul(Tensor::randn({out, r}, DType::F32, &data), 0.1).to(kCuda);
  Tensor gy = Tensor::randn({N, out}, DType::F32, &data).to(kCuda);
  std::vector<Tensor> results;
  for (const auto path : {cuda::LoraCudaPath::Auto, cuda::LoraCudaPath::Chain}) {
    cuda::set_lora_path(path);
    Generator g(99);  // the same seed, so the same mask
    Tensor xg = x.detach().requires_grad_(), Ag = A.detach().requires_grad_(), Bg = B.detach().requires_grad_();
    Tensor y = lora_linear(xg, W, b, Ag, Bg, 2.0, 0.25, true, &g);
    y.backward(gy);
    results.insert(results.end(), {y, xg.grad(), Ag.grad(), Bg.grad()});
  }
  const char* what[] = {"y", "dx", "dA", "dB"};
  for (int k = 0; k < 4; ++k) {
    INFO(what[k]);
    CHECK(rel_err(results[static_cast<size_t>(k)], results[static_cast<size_t>(k + 4)]) < 1e-5);
  }
}
