// Benchmark: one LoRA fine-tuning step (forward, next-token cross-entropy, backward, AdamW on the
// adapters) of a transformers decoder with random weights: an OPT-125m-shaped model and a
// ~125M-parameter Llama-shaped one (GQA 12/4), PEFT's default targets (q_proj, v_proj), r 16.
// Prints one JSON object per model: median / min step time over the timed steps and tokens/s.
// The PyTorch + PEFT peer (bench/hf_lora_step_torch.py) builds the same configs.
//   usage: bench_hf_lora_step [--models opt125m,llama125m] [--batch B] [--seq T] [--repeats N]
//                             [--device cpu|cuda] [--bf16]
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "peft.h"
#include "step_timing.h"

using namespace peft;
namespace hf = peft::nn::hf;

// The configs shared with the peer (same keys as transformers' config.json).
static nlohmann::json model_config(const std::string& name) {
  if (name == "opt125m")
    return {{"model_type", "opt"}, {"hidden_size", 768}, {"ffn_dim", 3072}, {"num_hidden_layers", 12},
            {"num_attention_heads", 12}, {"vocab_size", 50272}, {"max_position_embeddings", 2048},
            {"word_embed_proj_dim", 768}, {"do_layer_norm_before", true}, {"pad_token_id", 1}, {"dropout", 0.0}};
  if (name == "llama125m")
    return {{"model_type", "llama"}, {"hidden_size", 768}, {"intermediate_size", 2048}, {"num_hidden_layers", 12},
            {"num_attention_heads", 12}, {"num_key_value_heads", 4}, {"vocab_size", 32000},
            {"max_position_embeddings", 2048}, {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", false}};
  PEFT_ERROR("unknown model '", name, "' (opt125m, llama125m)");
}

int main(int argc, char** argv) {
  std::vector<std::string> models = {"opt125m", "llama125m"};
  int64_t batch = 2, seq = 128;
  int repeats = 5;
  Device device = Device::cpu();
  bool bf16 = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--bf16") { bf16 = true; continue; }
    if (a == "--models") {
      models.clear();
      std::stringstream ss(v);
      for (std::string t; std::getline(ss, t, ',');) models.push_back(t);
    } else if (a == "--batch") batch = std::stoll(v);
    else if (a == "--seq") seq = std::stoll(v);
    else if (a == "--repeats") repeats = std::stoi(v);
    else if (a == "--device") device = Device::parse(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
    ++i;
  }
  try {
    for (const auto& name : models) {
      manual_seed(0);
      auto lm = hf::causal_lm_from_config(hf::HfConfig(model_config(name), name));
      if (!device.is_cpu()) lm->to(device);
      if (bf16) lm->to(DType::BF16);
      LoraConfig cfg;
      cfg.r = 16;
      cfg.lora_alpha = 32;
      cfg.task_type = "CAUSAL_LM";
      auto pm = get_peft_model(lm, cfg);
      pm->train();
      optim::AdamW opt(pm->trainable_parameters(), {.lr = 1e-4});
      Generator gen(1);
      std::vector<int64_t> ids(static_cast<size_t>(batch * seq));
      for (auto& t : ids) t = 3 + static_cast<int64_t>(gen.uniform() * static_cast<double>(lm->vocab_size() - 3));
      Tensor x = Tensor::from_vector(ids, {batch, seq});
      if (!device.is_cpu()) x = x.to(device);
      auto step = [&] {
        Tensor logits = lm->logits(x);
        Tensor loss = cross_entropy(logits.slice(1, 0, seq - 1).reshape({batch * (seq - 1), logits.size(2)}).to(DType::F32),
                                    x.slice(1, 1, seq).reshape({batch * (seq - 1)}));
        opt.zero_grad();
        loss.backward();
        opt.step();
        (void)loss.item();  // reads the loss back: the device has finished the step
      };
      const bench::StepTiming t = bench::time_steps(2, repeats, step);
      const double med = t.median_ms;
      const auto [trainable, all] = pm->get_nb_trainable_parameters();
      std::printf("{\"impl\": \"peft.cpp\", \"case\": \"hf_lora_step\", \"model\": \"%s\", \"device\": \"%s\", "
                  "\"dtype\": \"%s\", \"batch\": %lld, \"seq\": %lld, \"threads\": %d, \"params\": %lld, "
                  "\"trainable\": %lld, \"median_ms\": %.3f, \"min_ms\": %.3f, \"tokens_per_s\": %.1f, \"repeats\": %d}\n",
                  name.c_str(), device.str().c_str(), bf16 ? "bf16" : "f32", static_cast<long long>(batch),
                  static_cast<long long>(seq), bench::max_threads(), static_cast<long long>(all), static_cast<long long>(trainable),
                  med, t.min_ms, static_cast<double>(batch * seq) / (med / 1e3), repeats);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
