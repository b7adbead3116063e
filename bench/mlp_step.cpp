// Benchmark: one training step of the seed MLP (forward, NLL loss, backward, AdamW) with all
// parameters trainable, at batch 64 and 1024. Prints one JSON object per case: median and
// min of >= 20 timed steps after warm-up. Threads: OMP_NUM_THREADS (as the peer script).
//   usage: bench_mlp_step [--repeats N] [--batches 64,1024]
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "models/mlp.h"
#include "step_timing.h"

using namespace peft;

int main(int argc, char** argv) {
  int repeats = 20;
  std::vector<int64_t> batches = {64, 1024};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--repeats") repeats = std::stoi(argv[i + 1]);
    else if (a == "--batches") {
      batches.clear();
      std::stringstream ss(argv[i + 1]);
      std::string tok;
      while (std::getline(ss, tok, ',')) batches.push_back(std::stoll(tok));
    }
  }
  manual_seed(0);
  for (int64_t batch : batches) {
    auto model = std::make_shared<samples::MLP>(2000);
    optim::AdamW opt(model->parameters(), {});
    Generator gen(1);
    Tensor x = Tensor::rand({batch, 20}, DType::F32, &gen);
    std::vector<int64_t> labels(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i) labels[i] = i % 2;
    Tensor y = Tensor::from_vector(labels, {batch});
    auto step = [&] {
      Tensor loss = nll_loss(model->forward(x), y);
      opt.zero_grad();
      loss.backward();
      opt.step();
    };
    const bench::StepTiming t = bench::time_steps(3, repeats, step);
    // FLOPs of one step: forward 2·B·(20·H + H·H + 2·H), backward about twice that.
    const double H = 2000, flops = 3 * 2.0 * static_cast<double>(batch) * (20 * H + H * H + 2 * H);
    std::printf("{\"impl\": \"peft.cpp\", \"case\": \"mlp_step\", \"batch\": %lld, \"threads\": %d, "
                "\"median_ms\": %.3f, \"min_ms\": %.3f, \"gflops\": %.1f, \"repeats\": %d}\n",
                static_cast<long long>(batch), bench::max_threads(), t.median_ms, t.min_ms, flops / (t.median_ms * 1e6),
                repeats);
    std::fflush(stdout);
  }
  return 0;
}
