// Full fine-tuning of the seed MLP (the LoRA demo is samples/mlp_lora): trains the seed MLP
// (../shared/seeds/custom_models.md) on the PEFT notebook's toy task with Adam (lr 2e-3,
// batch 64, 30 epochs) and prints per-epoch losses.
//   usage: mlp_train [--epochs N] [--hidden H] [--seed S]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "models/mlp.h"

using namespace peft;

int main(int argc, char** argv) {
  int64_t epochs = 30, hidden = 2000;
  uint64_t seed = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--epochs" || a == "--hidden" || a == "--seed") && i + 1 < argc) {
      int64_t v = std::stoll(argv[++i]);
      if (a == "--epochs") epochs = v;
      else if (a == "--hidden") hidden = v;
      else seed = static_cast<uint64_t>(v);
    } else {
      std::fprintf(stderr, "usage: %s [--epochs N] [--hidden H] [--seed S]\n", argv[0]);
      return 2;
    }
  }
  try {
    manual_seed(seed);
    Generator data_gen(seed);
    samples::ToyTask task = samples::make_toy_task(data_gen);
    auto model = std::make_shared<samples::MLP>(hidden);
    std::cout << "named_modules():\n";
    for (auto& [name, m] : model->named_modules()) std::cout << "  ('" << name << "', " << m->type_name() << ")\n";
    int64_t n_params = 0;
    for (auto& p : model->parameters()) n_params += p.numel();
    std::cout << "parameters: " << n_params << "\n";
    optim::Adam opt(model->parameters(), {2e-3});
    samples::EpochResult r;
    for (int64_t ep = 0; ep < epochs; ++ep) {
      auto t0 = std::chrono::steady_clock::now();
      r = samples::run_epoch(*model, opt, task, 800, 64, data_gen);
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("epoch %2lld  train loss %.4f  eval loss %.4f  (%.2f s)\n", static_cast<long long>(ep), r.train_loss,
                  r.eval_loss, dt);
      std::fflush(stdout);
    }
    std::printf("final eval loss %.4f\n", r.eval_loss);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
