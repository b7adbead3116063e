// The seed's timm example (../shared/seeds/custom_models.md) in C++: PoolFormer-M36 with 3
// classes, LoRA on the MLP convolutions (regex `.*\.mlp\.fc\d`), the classifier head.fc
// trained in full, then one AdamW step on a random batch (--steps N: N steps of one AdamW).
//
// The batch is 2 × 3 × 64 × 64 by default, not timm's 224 × 224, so the step takes seconds on a
// CPU; the network is fully convolutional with global pooling, so any size ≥ 32 runs
// (--image-size 224 for the real one).
//
//   usage: poolformer_lora [--image-size N] [--batch N] [--device cpu|cuda[:i]] [--steps N] [--profile TRACE.json]
//                          [--weights BASE.safetensors] [--out DIR]
//   --device cuda: model and batch on the GPU (the adapters follow the base layers); --steps N: N
//   steps, each timed (the first includes cuBLAS / cuDNN warm-up); --profile: the last step under
//   peft::profiler, its op table printed and its Chrome trace written to TRACE.json; --weights:
//   start from a timm MetaFormer state dict (any size of the family) instead of a random
//   PoolFormer-M36; --out: save the trained adapter there (save_pretrained).
//   Under `mpirun -np K` (a build with MPI) it trains data-parallel: the batch (--batch) stays the
//   global batch, each rank runs its shard (peft::DataParallel), rank 0 prints and saves; the
//   adapter equals the one-process run's within 1e-5. An error on any rank ends the job naming it.
//          poolformer_lora infer --weights BASE.safetensors [--adapter DIR] --input X.safetensors --out Y.safetensors
//
// `infer` builds the MetaFormer that BASE (a timm state dict, e.g.
// `safetensors.torch.save_file(timm.create_model("poolformer_m36", num_classes=3).state_dict(), p)`)
// describes, loads it by name, optionally loads a LoRA adapter directory, and writes the
// output for tensor "x" of X as tensor "y" of Y.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "poolformer_lora/poolformer_lora.h"

using namespace peft;

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--image-size N] [--batch N] [--device cpu|cuda[:i]] [--steps N] [--profile TRACE.json]\n"
               "          [--weights BASE.safetensors] [--out DIR]\n"
               "       %s infer --weights BASE.safetensors [--adapter DIR] --input X.safetensors --out Y.safetensors\n",
               argv0, argv0);
  return 2;
}

int run_infer(const std::map<std::string, std::string>& opt) {
  Tensor x = io::find_tensor(io::load_file(opt.at("--input")), "x");
  Tensor y = samples::poolformer_infer(opt.at("--weights"), opt.count("--adapter") ? opt.at("--adapter") : "", x);
  io::save_file({{"y", y}}, opt.at("--out"));
  std::cout << "wrote y " << shape_str(y.shape()) << " to " << opt.at("--out") << "\n";
  return 0;
}

struct DemoOptions {
  int64_t image_size = 64, batch = 2, steps = 1;
  std::string device = "cpu", trace, weights, out;
};

int run_demo(const DemoOptions& o) {
  PEFT_CHECK(o.steps >= 1, "--steps must be >= 1, got ", o.steps);
  PEFT_CHECK(o.batch >= 1 && o.image_size >= 1, "--batch and --image-size must be >= 1");
  dist::Communicator& comm = dist::world();
  const bool lead = comm.rank() == 0;  // rank 0 prints and writes; every rank trains
  Device dev = Device::parse(o.device);
  // Data-parallel on GPUs: "cuda" means this rank's GPU (one per rank, by node-local rank).
  if (comm.size() > 1 && o.device == "cuda" && cuda_device_count() > 0)
    dev = Device::cuda(dist::local_rank() % cuda_device_count());
  PEFT_CHECK(!dev.is_cuda() || dev.index < cuda_device_count(), "--device ", dev.str(), ": this machine has ",
             cuda_device_count(), " CUDA device(s)", built_with_cuda() ? "" : " (this build has no CUDA backend)");
  manual_seed(0);
  std::shared_ptr<samples::MetaFormer> model =
      o.weights.empty() ? samples::poolformer_m36(3) : samples::load_poolformer(o.weights);
  const int64_t num_classes = model->config().num_classes;
  PEFT_CHECK(num_classes > 0, "--weights ", o.weights, ": the model has no classifier head.fc to train");
  if (lead) {
    if (comm.size() > 1) std::printf("data-parallel: world size %d (%s)\n", comm.size(), comm.backend().c_str());
    samples::print_named_modules(*model, std::cout);
  }
  model->to(dev);

  auto peft_model = get_peft_model(model, samples::poolformer_lora_config());
  if (lead) {
    peft_model->print_trainable_parameters();
    std::cout << samples::python_list(peft_model->targeted_module_names()) << "\n";
  }
  std::optional<DataParallel> dp;
  if (comm.size() > 1) dp.emplace(*peft_model, comm);  // rank 0's initial adapter on every rank
  // One optimizer for all the steps, so --steps N is N steps of one AdamW (its moments carry over).
  optim::AdamW opt(peft_model->trainable_parameters(), {1e-3});

  if (lead)
    std::printf("one AdamW step on a random %lld x 3 x %lld x %lld batch\n", static_cast<long long>(o.batch),
                static_cast<long long>(o.image_size), static_cast<long long>(o.image_size));
  for (int64_t s = 0; s < o.steps; ++s) {
    std::optional<profiler::Profile> prof;
    if (!o.trace.empty() && s == o.steps - 1 && lead) prof.emplace();
    samples::TrainStepResult r = samples::poolformer_train_step(*peft_model, opt, num_classes, o.batch, o.image_size,
                                                                /*seed=*/0, dp ? &*dp : nullptr);
    if (lead)
      std::printf("loss %.4f -> %.4f after the step (%.2f s forward + backward + step on %s)\n", r.loss_before,
                  r.loss_after, r.seconds, dev.str().c_str());
    if (prof) {
      prof->stop();
      std::cout << profiler::key_averages_table(false, dev.is_cuda() ? "cuda_total" : "host_total", 20);
      profiler::export_chrome_trace(o.trace);
      std::cout << "profile of step " << s << ": Chrome trace written to " << o.trace << "\n";
    }
    std::fflush(stdout);
  }
  if (dp && lead)
    std::printf("data-parallel: %lld bytes of gradients all-reduced per step, %.3f ms per step in all-reduce\n",
                static_cast<long long>(dp->bytes_per_step()),
                1e3 * dp->stats().seconds / static_cast<double>(std::max<int64_t>(dp->stats().steps, 1)));
  if (!o.out.empty() && lead) {
    peft_model->save_pretrained(o.out);
    std::cout << "saved adapter to " << o.out << "\n";
  }
  comm.barrier();  // no rank leaves before rank 0 has saved (an error there still ends them all)
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // An exception on any rank (bad numbers in the options included) ends the whole job naming that
  // rank; in one process it prints "error: ..." and exits 1.
  return dist::run_guarded([&]() -> int {
    if (argc > 1 && std::string(argv[1]) == "infer") {
      std::map<std::string, std::string> opt;
      for (int i = 2; i + 1 < argc; i += 2) opt[argv[i]] = argv[i + 1];
      if ((argc - 2) % 2 != 0 || !opt.count("--weights") || !opt.count("--input") || !opt.count("--out") ||
          opt.size() != 3 + opt.count("--adapter"))
        return usage(argv[0]);
      return run_infer(opt);
    }
    DemoOptions o;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (i + 1 >= argc) return usage(argv[0]);
      if (a == "--image-size") o.image_size = std::stoll(argv[++i]);
      else if (a == "--batch") o.batch = std::stoll(argv[++i]);
      else if (a == "--device") o.device = argv[++i];
      else if (a == "--steps") o.steps = std::stoll(argv[++i]);
      else if (a == "--profile") o.trace = argv[++i];
      else if (a == "--weights") o.weights = argv[++i];
      else if (a == "--out") o.out = argv[++i];
      else return usage(argv[0]);
    }
    return run_demo(o);
  });
}
