// GPU benchmark suite (issue 4, "Benchmarks"; ../shared/spec/performance.md). Built only with the
// CUDA backend. Prints one JSON object per line with the fields of bench/gpu_suite_torch.py (the
// same cases in PyTorch eager); bench/run_gpu_suite.sh runs both and prints ratio lines.
//   gemm         matmul at 4096³ and 8192³ in F32, F32 with TF32 allowed, and BF16, and the same
//                product as one raw cuBLAS call on the same buffers (impl "cublas-raw"): TFLOP/s,
//                ours / raw
//   elementwise  add, mul, gelu, relu on 64M F32 elements: GB/s (bytes read + written once) and
//                the fraction of a device-to-device cudaMemcpyAsync's GB/s (impl "cuda-memcpy";
//                the bar is ≥ 0.8)
//   mlp_step     the seed MLP LoRA training step (forward, NLL, backward, AdamW) at batch 64, 1024
//   poolformer   PoolFormer-M36 + the seed's LoRA config, forward + backward, batch 32, 224²
//   lora_linear  the LoRA tax at spec/performance.md §1's headline shape (bench/gpu_suite_lora.cpp)
//   lora_sweep   the same over §1's grid of shapes, BF16 and TF32, plain / fused / naive (not in
//                "all": ~200 configurations; run it by name)
// Every result is checked against a reference (host double, or our CPU backend) before it is
// timed; a failed check or a peft::Error (an op without a CUDA kernel, out of memory) prints
// {"impl", "case", "error"} for that case and the suite goes on.
// Timing: warm-up, then each repeat between two CUDA events on the engine's stream, with the
// stream drained before each repeat so every repeat starts from an idle GPU and host launch
// gaps count, as in a training loop; median and min. Peak allocated bytes from
// peft::cuda::memory_stats(), reset after setup, so they include the resident weights and inputs
// (alloc_at_start_bytes says how much). No L2 flush: the elementwise tensors (256 MiB) and the
// GEMM operands dwarf the 50 MB L2, and the MLP/PoolFormer steps reuse their weights as training
// does ("l2_flush": false says so).
// Without a CUDA device: one line {"skipped": "no CUDA device"}, exit 0.
//   lora_sweep_quick  12 BF16 points of that grid (N 2048 / 8192; 1024², 4096², 4096 x 11008; r 16)
//   usage: bench_gpu_suite [--case gemm|elementwise|mlp_step|poolformer|lora_linear|lora_sweep|lora_sweep_quick|all]
//                          [--repeats N] [--profile DIR]
//   --profile DIR: after each timed pass, one more run of it under peft::profiler; its op table
//   goes to stderr, its Chrome trace to DIR/<case>_<k>.json (stdout stays JSON lines).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gpu_bench.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/memory.cuh"   // the engine's stream: events and raw calls must be queued on it
#include "kernels/cuda/runtime.cuh"  // device_name
#include "models/mlp.h"
#include "poolformer_lora/poolformer_lora.h"

using namespace peft;

namespace gpu_bench {

const Device kGpu = Device::cuda(0);
std::string g_device_name;

// ---------------------------------------------------------------------------- timing and output


// Owns the events of one timed run (destroyed on every path, exceptions included).
struct Events {
  std::vector<cudaEvent_t> ev;
  explicit Events(size_t n) : ev(n, nullptr) {
    for (auto& e : ev) PEFT_CUDA_CHECK(cudaEventCreate(&e));
  }
  ~Events() {
    for (auto e : ev)
      if (e) (void)cudaEventDestroy(e);
  }
  Events(const Events&) = delete;
  Events& operator=(const Events&) = delete;
};

std::string g_profile_dir;  // --profile
std::string g_case;         // the case guarded() runs
int g_case_pass = 0;        // timed passes so far in it

// One more run of `step` under the profiler: table to stderr, trace to g_profile_dir.
void profile_step(const std::function<void()>& step) {
  {
    profiler::Profile prof;
    step();
    cuda::synchronize(kGpu);
  }
  const std::string path = g_profile_dir + "/" + g_case + "_" + std::to_string(g_case_pass) + ".json";
  profiler::export_chrome_trace(path);
  std::fprintf(stderr, "== profile of %s pass %d (%s)\n%s", g_case.c_str(), g_case_pass, path.c_str(),
               profiler::key_averages_table(false, "cuda_total", 15).c_str());
}

Timing time_step(int warmup, int repeats, const std::function<void()>& step) {
  cudaStream_t s = cuda::stream(0);
  cuda::synchronize(kGpu);
  cuda::reset_peak_memory_stats(kGpu);
  Timing t;
  t.alloc_at_start = cuda::memory_stats(kGpu).allocated_bytes;
  for (int i = 0; i < warmup; ++i) step();
  Events ev(2 * static_cast<size_t>(repeats));
  for (int r = 0; r < repeats; ++r) {
    cuda::synchronize(kGpu);
    PEFT_CUDA_CHECK(cudaEventRecord(ev.ev[2 * r], s));
    step();
    PEFT_CUDA_CHECK(cudaEventRecord(ev.ev[2 * r + 1], s));
  }
  cuda::synchronize(kGpu);
  PEFT_CUDA_CHECK(cudaGetLastError());
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    float x = 0;
    PEFT_CUDA_CHECK(cudaEventElapsedTime(&x, ev.ev[2 * r], ev.ev[2 * r + 1]));
    ms.push_back(x);
  }
  std::sort(ms.begin(), ms.end());
  t.median_ms = ms[ms.size() / 2];
  t.min_ms = ms.front();
  t.repeats = repeats;
  t.peak_alloc = cuda::memory_stats(kGpu).peak_allocated_bytes;
  if (!g_profile_dir.empty()) profile_step(step);
  ++g_case_pass;
  return t;
}

// Rounded to `unit` (a negative power of ten) by dividing by its inverse, so JSON shows 52.8
// rather than 52.800000000000004.
double round_to(double v, double unit) {
  const double inv = std::round(1.0 / unit);
  return std::round(v * inv) / inv;
}

Json line(const std::string& impl, const std::string& name, const std::string& dtype, const Timing& t) {
  return Json{{"impl", impl},
              {"case", name},
              {"device", g_device_name},
              {"dtype", dtype},
              {"median_ms", round_to(t.median_ms, 1e-4)},
              {"min_ms", round_to(t.min_ms, 1e-4)},
              {"repeats", t.repeats},
              {"alloc_at_start_bytes", t.alloc_at_start},
              {"peak_alloc_bytes", t.peak_alloc},
              {"l2_flush", false}};
}

void emit(const Json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

// Runs one case; an error becomes its JSON line so the rest of the suite still runs.
void guarded(const std::string& name, const std::function<void()>& body) {
  g_case = name;
  g_case_pass = 0;
  try {
    body();
  } catch (const std::exception& e) {
    emit(Json{{"impl", "peft.cpp"}, {"case", name}, {"device", g_device_name}, {"error", e.what()}});
    // A failed case must not leak its sticky state (TF32, fused LoRA) or its cached blocks into the next.
    cuda::set_allow_tf32(false);
    cuda::set_lora_path(cuda::LoraCudaPath::Auto);  // the default
    (void)cudaGetLastError();
    cuda::empty_cache(kGpu);
  }
}

// ---------------------------------------------------------------------------- checks

// The tensor's elements as host floats (F32 or BF16, any device).
std::vector<float> host_floats(const Tensor& t) {
  const Tensor h = t.detach().to(Device::cpu()).contiguous();
  std::vector<float> v(static_cast<size_t>(h.numel()));
  if (h.dtype() == DType::F32) {
    if (!v.empty()) std::memcpy(v.data(), h.raw_data(), v.size() * sizeof(float));
  } else if (h.dtype() == DType::BF16) {
    const auto* p = static_cast<const uint16_t*>(h.raw_data());
    for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_float(p[i]);
  } else {
    PEFT_ERROR("host_floats: unsupported dtype ", dtype_name(h.dtype()));
  }
  return v;
}

// ‖got − ref‖ / ‖ref‖ in double; NaN when any element of `got` is NaN (an unwritten poisoned one).
double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  PEFT_CHECK(got.size() == ref.size(), "rel_err: ", got.size(), " vs ", ref.size(), " elements");
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// Frees a NaN-filled block of the size an op's output will ask for: the caching allocator hands
// that block straight back to the op, so an element the kernel fails to write shows as NaN.
void poison_next(const Shape& shape, DType dtype) {
  (void)Tensor::full(shape, std::numeric_limits<double>::quiet_NaN(), dtype, kGpu);
}

// ‖C − A·B‖ / ‖A·B‖ over 256 scattered entries, A·B in double on the host (n × n row-major).
double sampled_gemm_err(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c,
                        int64_t n) {
  double num = 0, den = 0;
  for (int64_t k = 0; k < 256; ++k) {
    const int64_t i = (k * 7919 + 13) % n, j = (k * 104729 + 7) % n;
    double ref = 0;
    for (int64_t p = 0; p < n; ++p) ref += static_cast<double>(a[i * n + p]) * b[p * n + j];
    const double d = c[i * n + j] - ref;
    if (std::isnan(d)) return d;
    num += d * d;
    den += ref * ref;
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

void require(double err, double tol, const std::string& what) {
  PEFT_CHECK(err <= tol, "check failed before timing: ", what, " relative error ", err, " > ", tol);
}

}  // namespace gpu_bench

using namespace gpu_bench;

namespace {

// ---------------------------------------------------------------------------- gemm

// A cuBLAS handle of the suite's own on the engine's stream, so the raw product is ordered with
// ours and timed by the same events; separate from the engine's so nothing here changes it.
struct RawCublas {
  cublasHandle_t h = nullptr;
  RawCublas() {
    PEFT_CUBLAS_CHECK(cublasCreate(&h));
    PEFT_CUBLAS_CHECK(cublasSetStream(h, cuda::stream(0)));
  }
  ~RawCublas() { (void)cublasDestroy(h); }
  RawCublas(const RawCublas&) = delete;
  RawCublas& operator=(const RawCublas&) = delete;
};

// Row-major C = A·B (n × n) as column-major Cᵀ = Bᵀ·Aᵀ: B first, no transposes. F32 goes through
// cublasSgemm (the plain entry point anyone would call), TF32 and BF16 through cublasGemmEx.
void raw_gemm(cublasHandle_t h, const std::string& mode, int n, const Tensor& a, const Tensor& b, Tensor& c) {
  const float one = 1, zero = 0;
  if (mode == "f32") {
    PEFT_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, static_cast<const float*>(b.raw_data()),
                                  n, static_cast<const float*>(a.raw_data()), n, &zero,
                                  static_cast<float*>(c.raw_data()), n));
    return;
  }
  const cudaDataType_t t = mode == "bf16" ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t ct = mode == "tf32" ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  PEFT_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, b.raw_data(), t, n, a.raw_data(), t, n,
                                 &zero, c.raw_data(), t, n, ct, CUBLAS_GEMM_DEFAULT));
}

void case_gemm(int repeats) {
  RawCublas raw;
  Generator gen(1);
  for (int n : {4096, 8192}) {
    // Random operands (never zeros: they hide unwritten outputs and run faster than real data).
    const Tensor a32 = Tensor::randn({n, n}, DType::F32, &gen).to(kGpu);
    const Tensor b32 = Tensor::randn({n, n}, DType::F32, &gen).to(kGpu);
    for (const std::string mode : {"f32", "tf32", "bf16"}) {
      const std::string name = "gemm_" + mode + "_" + std::to_string(n);
      guarded(name, [&] {
        const bool bf16 = mode == "bf16";
        const Tensor a = bf16 ? a32.to(DType::BF16) : a32, b = bf16 ? b32.to(DType::BF16) : b32;
        cuda::set_allow_tf32(mode == "tf32");
        // The reference uses the operands as the GPU sees them (rounded to BF16 for bf16), so
        // the error is the product's alone: ~1e-6 F32, ~3e-4 TF32, ~2e-3 BF16 (output rounding).
        const std::vector<float> ha = host_floats(a), hb = host_floats(b);
        Tensor c_raw = Tensor::full({n, n}, std::numeric_limits<double>::quiet_NaN(), a.dtype(), kGpu);
        raw_gemm(raw.h, mode, n, a, b, c_raw);
        poison_next({n, n}, a.dtype());
        const std::vector<float> hc = host_floats(matmul(a, b)), hr = host_floats(c_raw);
        const double tol = mode == "f32" ? 1e-4 : mode == "tf32" ? 2e-3 : 1e-2;
        const double err = sampled_gemm_err(ha, hb, hc, n), err_raw_ref = sampled_gemm_err(ha, hb, hr, n);
        require(err, tol, "matmul vs host double");
        require(err_raw_ref, tol, "raw cuBLAS vs host double");
        const double err_vs_raw = rel_err(hc, hr);

        const double flops = 2.0 * n * n * n;
        const Timing tr = time_step(3, repeats, [&] { raw_gemm(raw.h, mode, n, a, b, c_raw); });
        const Timing to = time_step(3, repeats, [&] { (void)matmul(a, b); });
        Json jr = line("cublas-raw", name, mode, tr);
        jr["tflops"] = round_to(flops / (tr.median_ms * 1e9), 0.01);
        jr["check_rel_err"] = err_raw_ref;
        emit(jr);
        Json jo = line("peft.cpp", name, mode, to);
        jo["tflops"] = round_to(flops / (to.median_ms * 1e9), 0.01);
        jo["tflops_ratio_vs_raw"] = round_to(tr.median_ms / to.median_ms, 1e-3);
        jo["check_rel_err"] = err;
        jo["rel_err_vs_raw"] = err_vs_raw;
        emit(jo);
        cuda::set_allow_tf32(false);
      });
    }
  }
}

// ---------------------------------------------------------------------------- elementwise

void case_elementwise(int repeats) {
  const int64_t n = int64_t{64} << 20;
  const double tensor_bytes = 4.0 * static_cast<double>(n);
  Generator gen(1);
  const Tensor ah = Tensor::randn({n}, DType::F32, &gen), bh = Tensor::randn({n}, DType::F32, &gen);
  const Tensor a = ah.to(kGpu), b = bh.to(kGpu);

  // The ceiling: the driver's device-to-device copy of one tensor (bytes read + written).
  double copy_gbps = 0;
  guarded("d2d_copy_64M", [&] {
    Tensor dst = Tensor::empty({n}, DType::F32, kGpu);
    const Timing t = time_step(5, repeats, [&] {
      PEFT_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), a.raw_data(), a.nbytes(), cudaMemcpyDeviceToDevice,
                                      cuda::stream(0)));
    });
    copy_gbps = 2 * tensor_bytes / (t.median_ms * 1e6);
    Json j = line("cuda-memcpy", "d2d_copy_64M", "f32", t);
    j["gbps"] = round_to(copy_gbps, 0.1);
    emit(j);
  });

  struct Op {
    const char* name;
    int tensors;  // read + written, each once
    std::function<Tensor(const Tensor&, const Tensor&)> f;
  };
  const std::vector<Op> ops = {
      {"add", 3, [](const Tensor& x, const Tensor& y) { return add(x, y); }},
      {"mul", 3, [](const Tensor& x, const Tensor& y) { return mul(x, y); }},
      {"gelu", 2, [](const Tensor& x, const Tensor&) { return gelu(x); }},
      {"relu", 2, [](const Tensor& x, const Tensor&) { return relu(x); }},
  };
  for (const Op& op : ops) {
    const std::string name = std::string(op.name) + "_64M";
    guarded(name, [&] {
      // Our CPU backend is the reference (gelu's CPU erf is within 4e-7 of double).
      poison_next({n}, DType::F32);
      const double err = rel_err(host_floats(op.f(a, b)), host_floats(op.f(ah, bh)));
      require(err, 1e-5, name + " vs the CPU backend");
      const Timing t = time_step(5, repeats, [&] { (void)op.f(a, b); });
      const double gbps = op.tensors * tensor_bytes / (t.median_ms * 1e6);
      Json j = line("peft.cpp", name, "f32", t);
      j["gbps"] = round_to(gbps, 0.1);
      j["copy_gbps"] = round_to(copy_gbps, 0.1);
      j["bw_ratio_vs_copy"] = copy_gbps > 0 ? round_to(gbps / copy_gbps, 1e-3) : 0.0;
      j["check_rel_err"] = err;
      emit(j);
    });
  }
}

// ---------------------------------------------------------------------------- model steps

// The seed MLP with the seed's LoRA config, as bench/cpu_suite.cpp builds it.
std::shared_ptr<PeftModel> mlp_lora_model() {
  LoraConfig cfg;
  cfg.target_modules = {"seq.0", "seq.2"};
  cfg.modules_to_save = std::vector<std::string>{"seq.4"};
  return get_peft_model(std::make_shared<samples::MLP>(2000), cfg);
}

void case_mlp_step(int repeats) {
  for (int64_t batch : {int64_t{64}, int64_t{1024}}) {
    const std::string name = "mlp_lora_" + std::to_string(batch);
    guarded(name, [&] {
      Generator gen(1);
      auto model = mlp_lora_model();
      const Tensor xh = Tensor::rand({batch, 20}, DType::F32, &gen);
      std::vector<int64_t> labels(static_cast<size_t>(batch));
      for (int64_t i = 0; i < batch; ++i) labels[i] = i % 2;
      const Tensor yh = Tensor::from_vector(labels, {batch});
      double loss_cpu = 0;
      {
        NoGradGuard g;
        loss_cpu = nll_loss(model->forward(xh), yh).item();
      }
      model->to(kGpu);
      // After the move: AdamW creates its moments on the parameters' device.
      optim::AdamW opt(model->trainable_parameters(), {});
      const Tensor x = xh.to(kGpu), y = yh.to(kGpu);
      double err = 0;
      {
        NoGradGuard g;
        err = std::abs(nll_loss(model->forward(x), y).item() - loss_cpu) / std::abs(loss_cpu);
      }
      require(err, 1e-4, "loss on the GPU vs the CPU");
      const Timing t = time_step(5, repeats, [&] {
        Tensor loss = nll_loss(model->forward(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
      });
      const double H = 2000, flops = 2.0 * batch * (20 * H + H * H + 2 * H) * 2;  // fwd + dX (W frozen)
      Json j = line("peft.cpp", name, "f32", t);
      j["batch"] = batch;
      j["tf32"] = cuda::allow_tf32();
      j["tflops"] = round_to(flops / (t.median_ms * 1e9), 1e-3);
      j["check_rel_err"] = err;
      emit(j);
    });
  }
}

void case_poolformer(int repeats) {
  const std::string name = "poolformer_m36_fwd_bwd_b32";
  guarded(name, [&] {
    Generator gen(1);
    auto model = get_peft_model(samples::poolformer_m36(3), samples::poolformer_lora_config());
    // Check: the logits of two images on the GPU against our CPU backend. TF32 is off, but
    // cuDNN's F32 algorithms (Winograd, FFT) round differently from a direct sum, hence 1e-3
    // rather than F32's 1e-5; check_rel_err says how close it came.
    const Tensor probe = Tensor::randn({2, 3, 224, 224}, DType::F32, &gen);
    std::vector<float> ref;
    {
      NoGradGuard g;
      ref = host_floats(model->forward(probe));
    }
    model->to(kGpu);
    double err = 0;
    {
      NoGradGuard g;
      err = rel_err(host_floats(model->forward(probe.to(kGpu))), ref);
    }
    require(err, 1e-3, "PoolFormer logits on the GPU vs the CPU");
    const Tensor x = Tensor::randn({32, 3, 224, 224}, DType::F32, &gen).to(kGpu);
    const Timing t = time_step(3, repeats, [&] {
      model->zero_grad();
      sum(model->forward(x)).backward();
    });
    Json j = line("peft.cpp", name, "f32", t);
    j["batch"] = 32;
    j["tf32"] = cuda::allow_tf32();
    j["images_per_s"] = round_to(32.0 / (t.median_ms * 1e-3), 0.1);
    j["check_rel_err"] = err;
    emit(j);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string which = "all";
  int repeats = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--case") which = argv[i + 1];
    else if (a == "--repeats") repeats = std::max(1, std::stoi(argv[i + 1]));
    else if (a == "--profile") g_profile_dir = argv[i + 1];
    else which = "?";  // unknown flag: usage below
  }
  const std::vector<std::pair<std::string, std::function<void(int)>>> cases = {
      {"gemm", case_gemm}, {"elementwise", case_elementwise}, {"mlp_step", case_mlp_step},
      {"poolformer", case_poolformer}, {"lora_linear", case_lora_linear}, {"lora_sweep", case_lora_sweep},
      {"lora_sweep_quick", case_lora_sweep_quick}};
  const bool known = which == "all" || std::any_of(cases.begin(), cases.end(), [&](const auto& c) {
                       return c.first == which;
                     });
  if (!known || argc % 2 == 0) {
    std::fprintf(stderr,
                 "usage: %s [--case gemm|elementwise|mlp_step|poolformer|lora_linear|lora_sweep|lora_sweep_quick|all] "
                 "[--repeats N] "
                 "[--profile DIR]\n",
                 argv[0]);
    return 2;
  }
  // Usage is checked first so a typo fails here too; no device is not a failure (CI, laptops).
  if (!cuda_is_available()) {
    emit(Json{{"skipped", "no CUDA device"}});
    return 0;
  }
  g_device_name = cuda::device_name(0);
  manual_seed(0);
  try {
    for (const auto& [name, run] : cases)
      if (which == name || (which == "all" && name.rfind("lora_sweep", 0) != 0)) run(repeats);
  } catch (const std::exception& e) {  // outside any case: setup of the device itself failed
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
