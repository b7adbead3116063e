// bench_gpu_suite's LoRA cases (spec/performance.md §1; issue 6). For one shape, dtype and dropout
// rate: the plain linear and lora_linear (W frozen: dX, dA, dB), forward and forward + backward,
// each LoRA pass twice: "lora_*" = the library's default path (cuda::LoraCudaPath::Auto,
// core/ops_lora_fast.cpp: "path": "auto", "merged": whether its rule took W' = W + s·B·A) and
// "naive_*" = the cuBLAS chain in PEFT's order (LoraCudaPath::Chain: base GEMM, shrink, expand
// accumulated into y; Philox dropout), each with its "tax" (lora / plain − 1 of the same pass) and
// "roofline_pct" (the spec's F and Q_min with the H100 / H200 peaks). The hand-written WMMA kernels
// (LoraCudaPath::Wmma) are left out: 5-10x slower than the chain when measured (2026-12-04).
//   lora_linear  the headline shape (N 8192, 4096², r 16) in F32, TF32, BF16 and BF16 with F32
//                adapters ("bf16mix", PEFT's autocast_adapter_dtype), checked first against host
//                double at 64 sampled outputs (both paths)
//   lora_sweep   §1's grid: N ∈ {2048, 4096, 8192, 16384}; in × out ∈ {1024², 4096², 8192²,
//                4096 × 11008}; r ∈ {8, 16, 64}; dropout 0 / 0.1; TF32 and BF16 — checked first
//                Auto against the chain on the GPU (‖y_a − y_c‖ / ‖y_c‖)
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "gpu_bench.h"

using namespace peft;

namespace gpu_bench {

namespace {

struct LoraShape {
  int64_t N, in, out, r;
};
struct Variant {
  const char* name;
  DType dt;
  bool tf32;
  double peak_tflops;  // H100 / H200 dense
  DType adt;           // the adapters' dtype
};
const Variant kF32{"f32", DType::F32, false, 67, DType::F32}, kTF32{"tf32", DType::F32, true, 495, DType::F32},
    kBF16{"bf16", DType::BF16, false, 989, DType::BF16}, kBF16Mix{"bf16mix", DType::BF16, false, 989, DType::F32};

// The relative error a path may show against host double (the products' operand precision).
double check_tol(const Variant& v) { return v.dt == DType::BF16 || v.tf32 ? 1e-2 : 1e-5; }

void set_path(bool auto_path) { cuda::set_lora_path(auto_path ? cuda::LoraCudaPath::Auto : cuda::LoraCudaPath::Chain); }

// ‖C − ref‖ / ‖ref‖ of lora_linear at 64 sampled outputs against host double, through the chain
// and the Auto path; returns the larger.
double sampled_check(const LoraShape& sh, const Variant& v, const Tensor& x, const Tensor& W, const Tensor& b,
                     const Tensor& A, const Tensor& B, double s, const std::string& base) {
  const std::vector<float> xh = host_floats(x), wh = host_floats(W), bh = host_floats(b);
  const std::vector<float> ah = host_floats(A), bbh = host_floats(B);
  double err = 0;
  for (const bool fused : {false, true}) {
    set_path(fused);
    poison_next({sh.N, sh.out}, v.dt);
    const std::vector<float> yh = host_floats(lora_linear(x, W, b, A, B, s));
    set_path(true);
    double num = 0, den = 0;
    for (int64_t k = 0; k < 64; ++k) {
      const int64_t i = (k * 7919 + 13) % sh.N, o = (k * 104729 + 7) % sh.out;
      double ref = bh[o], low = 0;
      for (int64_t q = 0; q < sh.r; ++q) {
        double u = 0;
        for (int64_t c = 0; c < sh.in; ++c) u += static_cast<double>(xh[i * sh.in + c]) * ah[q * sh.in + c];
        low += u * bbh[o * sh.r + q];
      }
      for (int64_t c = 0; c < sh.in; ++c) ref += static_cast<double>(xh[i * sh.in + c]) * wh[o * sh.in + c];
      ref += s * low;
      const double d = yh[i * sh.out + o] - ref;
      num += d * d;
      den += ref * ref;
    }
    const double e = std::sqrt(num / std::max(den, 1e-300));
    require(e, check_tol(v), base + (fused ? " (auto)" : " (cuBLAS chain)") + " vs host double");
    err = std::max(err, e);
  }
  return err;
}

// ‖y_auto − y_chain‖ / ‖y_chain‖ over the whole output, on the GPU (dropout 0).
double fused_vs_chain(const Tensor& x, const Tensor& W, const Tensor& b, const Tensor& A, const Tensor& B, double s,
                      const std::string& base) {
  set_path(false);
  const Tensor yn = lora_linear(x, W, b, A, B, s).to(DType::F32);
  set_path(true);
  const Tensor yf = lora_linear(x, W, b, A, B, s).to(DType::F32);
  const Tensor d = sub(yf, yn);
  const double err = std::sqrt(sum(mul(d, d)).item() / std::max(sum(mul(yn, yn)).item(), 1e-300));
  require(err, 2e-2, base + " auto vs cuBLAS chain");
  return err;
}

// One shape × dtype × dropout: the check, then every pass timed.
void lora_config(const std::string& base, const LoraShape& sh, const Variant& v, double p, int repeats,
                 bool host_check) {
  guarded(base, [&] {
    cuda::set_allow_tf32(v.tf32);
    const bool h200 = g_device_name.find("H200") != std::string::npos;
    const double bw = h200 ? 4.8e12 : 3.35e12;
    const double s = 2.0;
    Generator gen(3);
    auto make = [&](const Shape& shape, double scale) {
      return mul(Tensor::randn(shape, DType::F32, &gen), scale).to(kGpu).to(v.dt);
    };
    const Tensor x = make({sh.N, sh.in}, 1.0), W = make({sh.out, sh.in}, 0.02), b = make({sh.out}, 0.1);
    const Tensor A = make({sh.r, sh.in}, 0.02).to(v.adt), B = make({sh.out, sh.r}, 0.02).to(v.adt);
    const Tensor gy = make({sh.N, sh.out}, 1.0);
    double err = 0;
    if (host_check) err = sampled_check(sh, v, x, W, b, A, B, s, base);
    else err = fused_vs_chain(x, W, b, A, B, s, base);
    Tensor xg = x.detach().requires_grad_(), Ag = A.detach().requires_grad_();
    Tensor Bg = B.detach().requires_grad_();
    const double N = static_cast<double>(sh.N), in = static_cast<double>(sh.in), out = static_cast<double>(sh.out),
                 r = static_cast<double>(sh.r);
    const double fwd_flops = 2.0 * N * in * out, lora_flops = 2.0 * N * r * (in + out);
    const double esz = static_cast<double>(dtype_size(v.dt));
    const double q_min = esz * (N * in + out * in + N * out + r * in + out * r);
    struct Pass {
      std::string name;
      double flops;
      std::function<void()> step;
      int plain = -1;      // the plain pass this one's tax is measured against
      bool fused = false;  // the Auto path (else the chain)
    };
    auto lora_fwd = [&] { (void)lora_linear(x, W, b, A, B, s, p, true); };
    auto lora_fwd_bwd = [&] {
      xg.zero_grad();
      Ag.zero_grad();
      Bg.zero_grad();
      lora_linear(xg, W, b, Ag, Bg, s, p, true).backward(gy);
    };
    std::vector<Pass> passes = {
        {"plain_fwd", fwd_flops, [&] { (void)linear(x, W, b); }},
        {"plain_fwd_bwd", 2 * fwd_flops,
         [&] {
           xg.zero_grad();
           linear(xg, W, b).backward(gy);
         }},
        {"lora_fwd", fwd_flops + lora_flops, lora_fwd, 0, true},
        {"lora_fwd_bwd", 2 * fwd_flops + 3 * lora_flops, lora_fwd_bwd, 1, true},
        {"naive_fwd", fwd_flops + lora_flops, lora_fwd, 0, false},
        {"naive_fwd_bwd", 2 * fwd_flops + 3 * lora_flops, lora_fwd_bwd, 1, false},
    };
    std::vector<double> ms(passes.size(), 0);
    for (size_t k = 0; k < passes.size(); ++k) {
      const Pass& ps = passes[k];
      set_path(ps.fused);
      const Timing t = time_step(3, repeats, ps.step);
      set_path(true);  // the library's default
      ms[k] = t.median_ms;
      const double t_star = std::max(ps.flops / (v.peak_tflops * 1e12), q_min / bw);
      Json j = line("peft.cpp", base + "_" + ps.name, v.name, t);
      j["n"] = sh.N;
      j["in"] = sh.in;
      j["out"] = sh.out;
      j["r"] = sh.r;
      j["dropout"] = p;
      j["fused"] = ps.fused;
      j["path"] = ps.fused ? "auto" : "chain";
      if (ps.fused) j["merged"] = detail::lora_fast_merges(sh.N, sh.in, sh.out, p);
      j["tflops"] = round_to(ps.flops / (t.median_ms * 1e9), 1e-3);
      j["roofline_pct"] = round_to(100.0 * t_star / (t.median_ms * 1e-3), 0.1);
      if (ps.plain >= 0) j["tax"] = round_to(t.median_ms / ms[static_cast<size_t>(ps.plain)] - 1.0, 1e-3);
      j["check_rel_err"] = err;
      emit(j);
    }
    cuda::set_allow_tf32(false);
  });
}

}  // namespace

void case_lora_linear(int repeats) {
  for (const Variant& v : {kF32, kTF32, kBF16, kBF16Mix})
    for (const double p : {0.0, 0.1}) {
      const std::string base = std::string("lora_linear_") + v.name + (p > 0 ? "_dropout0.1" : "");
      lora_config(base, {8192, 4096, 4096, 16}, v, p, repeats, p == 0);  // with dropout: the tests check the mask
    }
}

namespace {
// The sweep over the given grid; names as lora_sweep's, so one PyTorch run pairs with either.
void sweep(int repeats, const std::vector<Variant>& variants, const std::vector<int64_t>& ns,
           const std::vector<std::pair<int64_t, int64_t>>& dims, const std::vector<int64_t>& ranks) {
  for (const Variant& v : variants)
    for (const int64_t N : ns)
      for (const auto& [in, out] : dims)
        for (const int64_t r : ranks)
          for (const double p : {0.0, 0.1}) {
            const std::string base = std::string("lora_sweep_") + v.name + "_n" + std::to_string(N) + "_" +
                                     std::to_string(in) + "x" + std::to_string(out) + "_r" + std::to_string(r) +
                                     (p > 0 ? "_dropout0.1" : "");
            lora_config(base, {N, in, out, r}, v, p, repeats, false);
          }
}
}  // namespace

void case_lora_sweep(int repeats) {
  sweep(repeats, {kTF32, kBF16}, {2048, 4096, 8192, 16384}, {{1024, 1024}, {4096, 4096}, {8192, 8192}, {4096, 11008}},
        {8, 16, 64});
}

// A corner of the grid for a 5-minute GPU check: BF16, both sides of the merge rule (N 2048 is
// exactly at in·out / (in + out) for 4096², so the chain; 8192 merges), the narrow and the MLP shape.
void case_lora_sweep_quick(int repeats) {
  sweep(repeats, {kBF16}, {2048, 8192}, {{1024, 1024}, {4096, 4096}, {4096, 11008}}, {16});
}

}  // namespace gpu_bench
