// The seed's timm example (../shared/seeds/custom_models.md) in C++: PoolFormer-M36 with 3
// classes, LoRA on the MLP convolutions (regex `.*\.mlp\.fc\d`), the classifier head.fc
// trained in full, then one AdamW step on a random batch.
//
// The batch is 2 × 3 × 64 × 64 by default, not timm's 224 × 224, so the step takes seconds on a
// CPU; the network is fully convolutional with global pooling, so any size ≥ 32 runs
// (--image-size 224 for the real one).
//
//   usage: poolformer_lora [--image-size N] [--batch N] [--device cpu|cuda[:i]] [--steps N] [--profile TRACE.json]
//   --device cuda: model and batch on the GPU (the adapters follow the base layers); --steps N: N
//   steps, each timed (the first includes cuBLAS / cuDNN warm-up); --profile: the last step under
//   peft::profiler, its op table printed and its Chrome trace written to TRACE.json.
//          poolformer_lora infer --weights BASE.safetensors [--adapter DIR] --input X.safetensors --out Y.safetensors
//
// `infer` builds the MetaFormer that BASE (a timm state dict, e.g.
// `safetensors.torch.save_file(timm.create_model("poolformer_m36", num_classes=3).state_dict(), p)`)
// describes, loads it by name, optionally loads a LoRA adapter directory, and writes the
// output for tensor "x" of X as tensor "y" of Y.
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include "poolformer_lora/poolformer_lora.h"

using namespace peft;

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--image-size N] [--batch N] [--device cpu|cuda[:i]] [--steps N] [--profile TRACE.json]\n"
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

int run_demo(int64_t image_size, int64_t batch, const Device& dev, int64_t steps, const std::string& trace) {
  const int64_t num_classes = 3;
  PEFT_CHECK(steps >= 1, "--steps must be >= 1, got ", steps);
  PEFT_CHECK(!dev.is_cuda() || dev.index < cuda_device_count(), "--device ", dev.str(), ": this machine has ",
             cuda_device_count(), " CUDA device(s)", built_with_cuda() ? "" : " (this build has no CUDA backend)");
  manual_seed(0);
  auto model = samples::poolformer_m36(num_classes);
  samples::print_named_modules(*model, std::cout);
  model->to(dev);

  auto peft_model = get_peft_model(model, samples::poolformer_lora_config());
  peft_model->print_trainable_parameters();
  std::cout << samples::python_list(peft_model->targeted_module_names()) << "\n";

  std::printf("one AdamW step on a random %lld x 3 x %lld x %lld batch\n", static_cast<long long>(batch),
              static_cast<long long>(image_size), static_cast<long long>(image_size));
  for (int64_t s = 0; s < steps; ++s) {
    std::optional<profiler::Profile> prof;
    if (!trace.empty() && s == steps - 1) prof.emplace();
    samples::TrainStepResult r = samples::poolformer_train_step(*peft_model, num_classes, batch, image_size);
    std::printf("loss %.4f -> %.4f after the step (%.2f s forward + backward + step on %s)\n", r.loss_before,
                r.loss_after, r.seconds, dev.str().c_str());
    if (prof) {
      prof->stop();
      std::cout << profiler::key_averages_table(false, dev.is_cuda() ? "cuda_total" : "host_total", 20);
      profiler::export_chrome_trace(trace);
      std::cout << "profile of step " << s << ": Chrome trace written to " << trace << "\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc > 1 && std::string(argv[1]) == "infer") {
      std::map<std::string, std::string> opt;
      for (int i = 2; i + 1 < argc; i += 2) opt[argv[i]] = argv[i + 1];
      if ((argc - 2) % 2 != 0 || !opt.count("--weights") || !opt.count("--input") || !opt.count("--out") ||
          opt.size() != 3 + opt.count("--adapter"))
        return usage(argv[0]);
      return run_infer(opt);
    }
    int64_t image_size = 64, batch = 2, steps = 1;
    std::string device = "cpu", trace;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--image-size" && i + 1 < argc) image_size = std::stoll(argv[++i]);
      else if (a == "--batch" && i + 1 < argc) batch = std::stoll(argv[++i]);
      else if (a == "--device" && i + 1 < argc) device = argv[++i];
      else if (a == "--steps" && i + 1 < argc) steps = std::stoll(argv[++i]);
      else if (a == "--profile" && i + 1 < argc) trace = argv[++i];
      else return usage(argv[0]);
    }
    return run_demo(image_size, batch, Device::parse(device), steps, trace);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
