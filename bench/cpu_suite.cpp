// CPU benchmark suite (issue "CLI, robustness, CPU benchmarks"): one case per run so the
// reported max RSS belongs to that case. Prints one JSON object: median / min ms of the timed
// repeats after warm-up, GFLOP/s where the FLOP count is known, and max RSS in MiB.
//   usage: bench_cpu_suite --case gemm|lora_linear|mlp_lora_64|mlp_lora_1024|poolformer [--repeats N]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "models/mlp.h"
#include "models/poolformer.h"
#include "poolformer_lora/poolformer_lora.h"
#ifdef _OPENMP
#include <omp.h>
#endif

using namespace peft;

namespace {

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

double max_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux: KiB
}

// Runs `step` warmup + repeats times; prints the JSON line.
void run(const std::string& name, int repeats, int warmup, double flops, const std::function<void()>& step) {
  for (int i = 0; i < warmup; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  std::printf("{\"impl\": \"peft.cpp\", \"case\": \"%s\", \"threads\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, "
              "\"gflops\": %.1f, \"max_rss_mib\": %.1f, \"repeats\": %d}\n",
              name.c_str(), max_threads(), med, ms.front(), flops > 0 ? flops / (med * 1e6) : 0.0, max_rss_mib(),
              repeats);
}

std::shared_ptr<PeftModel> mlp_lora_model() {
  LoraConfig cfg;
  cfg.target_modules = {"seq.0", "seq.2"};
  cfg.modules_to_save = std::vector<std::string>{"seq.4"};
  return get_peft_model(std::make_shared<samples::MLP>(2000), cfg);
}

}  // namespace

int main(int argc, char** argv) {
  std::string which;
  int repeats = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--case") which = argv[i + 1];
    else if (a == "--repeats") repeats = std::stoi(argv[i + 1]);
  }
  manual_seed(0);
  Generator gen(1);
  try {
    if (which == "gemm") {
      // The machine's GEMM rate through our matmul (2048³, no autograd).
      Tensor a = Tensor::randn({2048, 2048}, DType::F32, &gen), b = Tensor::randn({2048, 2048}, DType::F32, &gen);
      run("gemm_2048", repeats, 2, 2.0 * 2048 * 2048 * 2048, [&] { (void)matmul(a, b); });
    } else if (which == "lora_linear") {
      // N 2048, 1024 → 1024, r 16, W frozen: forward + backward (dX, dA, dB).
      const int64_t N = 2048, in = 1024, out = 1024, r = 16;
      Tensor x = Tensor::randn({N, in}, DType::F32, &gen).set_requires_grad(true);
      Tensor W = Tensor::randn({out, in}, DType::F32, &gen, 0, 0.03), bias = Tensor::zeros({out});
      Tensor A = Tensor::randn({r, in}, DType::F32, &gen, 0, 0.03).set_requires_grad(true);
      Tensor B = Tensor::randn({out, r}, DType::F32, &gen, 0, 0.03).set_requires_grad(true);
      Tensor g = Tensor::randn({N, out}, DType::F32, &gen);
      const double flops = 2.0 * N * in * out + 2.0 * N * r * (in + out)     // forward
                           + 2.0 * N * in * out + 4.0 * N * r * (in + out);  // backward, W frozen
      run("lora_linear_fwd_bwd", repeats, 3, flops, [&] {
        x.zero_grad();
        A.zero_grad();
        B.zero_grad();
        lora_linear(x, W, bias, A, B, 2.0).backward(g);
      });
    } else if (which == "mlp_lora_64" || which == "mlp_lora_1024") {
      const int64_t batch = which == "mlp_lora_64" ? 64 : 1024;
      auto model = mlp_lora_model();
      optim::AdamW opt(model->trainable_parameters(), {});
      Tensor x = Tensor::rand({batch, 20}, DType::F32, &gen);
      std::vector<int64_t> labels(static_cast<size_t>(batch));
      for (int64_t i = 0; i < batch; ++i) labels[i] = i % 2;
      Tensor y = Tensor::from_vector(labels, {batch});
      const double H = 2000, flops = 2.0 * batch * (20 * H + H * H + 2 * H) * 2;  // fwd + dX (W frozen)
      run(which, repeats, 3, flops, [&] {
        Tensor loss = nll_loss(model->forward(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
      });
    } else if (which == "poolformer") {
      // PoolFormer-M36 with the seed's LoraConfig: forward + backward of a 2×3×224×224 batch.
      auto model = get_peft_model(samples::poolformer_m36(3), samples::poolformer_lora_config());
      Tensor x = Tensor::randn({2, 3, 224, 224}, DType::F32, &gen);
      run("poolformer_m36_fwd_bwd_b2", std::min(repeats, 5), 1, 0, [&] {
        model->zero_grad();
        sum(model->forward(x)).backward();
      });
    } else {
      std::fprintf(stderr, "usage: %s --case gemm|lora_linear|mlp_lora_64|mlp_lora_1024|poolformer [--repeats N]\n",
                   argv[0]);
      return 2;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
