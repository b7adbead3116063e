// hf_lora: LoRA on transformers decoder models (OPT, Llama, Mistral, Qwen2) from C++.
//   hf_lora params --model-config CONFIG.json [--r R] [--lora-alpha A] [--lora-dropout P]
//       PEFT's print_trainable_parameters() line for the model with PEFT's default LoRA targets
//       for its model_type (builds the model from the config; reads no weights).
//   hf_lora logits --model DIR [--adapter DIR] --input IN.safetensors --out OUT.safetensors [--device cpu|cuda]
//       IN: "input_ids" (I64 [B, T]) and optionally "attention_mask" (I64 [B, T], left padding);
//       OUT: "logits" (F32 [B, T, V]) in eval mode, with the PEFT adapter when given.
// DIR is a transformers save_pretrained folder (config.json + model.safetensors or a sharded
// index); the adapter folder is PEFT's (adapter_config.json + adapter_model.safetensors).
// Exit status: 0 done, 1 error (message on stderr), 2 usage.
#include <peft/peft.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <set>
#include <string>

using namespace peft;
namespace hf = peft::nn::hf;

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s params --model-config CONFIG.json [--r R] [--lora-alpha A] [--lora-dropout P]\n"
               "       %s logits --model DIR [--adapter DIR] --input IN.safetensors --out OUT.safetensors "
               "[--device cpu|cuda]\n",
               argv0, argv0);
  return 2;
}

// "--key value" pairs after the subcommand; false on an odd count, a repeat or an unknown key.
bool parse(int argc, char** argv, const std::set<std::string>& known, std::map<std::string, std::string>& out) {
  if ((argc - 2) % 2 != 0) return false;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!known.count(argv[i]) || out.count(argv[i])) return false;
    out[argv[i]] = argv[i + 1];
  }
  return true;
}

double number(const std::map<std::string, std::string>& o, const std::string& key, double def) {
  auto it = o.find(key);
  if (it == o.end()) return def;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  PEFT_CHECK(used == it->second.size() && used > 0, key, " expects a number, got '", it->second, "'");
  return v;
}

int run_params(const std::map<std::string, std::string>& o) {
  auto lm = hf::causal_lm_from_config(hf::HfConfig::from_file(o.at("--model-config")));
  LoraConfig cfg;
  cfg.task_type = "CAUSAL_LM";
  const double r = number(o, "--r", 8);
  PEFT_CHECK(r >= 1 && r == static_cast<double>(static_cast<int64_t>(r)), "--r expects a positive integer");
  cfg.r = static_cast<int64_t>(r);
  cfg.lora_alpha = number(o, "--lora-alpha", 8);
  cfg.lora_dropout = number(o, "--lora-dropout", 0.0);
  get_peft_model(lm, cfg)->print_trainable_parameters(std::cout);
  return 0;
}

int run_logits(const std::map<std::string, std::string>& o) {
  hf::LoadOptions load;
  if (o.count("--device")) load.device = Device::parse(o.at("--device"));
  auto lm = hf::from_pretrained(o.at("--model"), load);
  std::shared_ptr<PeftModel> pm;
  if (o.count("--adapter")) pm = PeftModel::from_pretrained(lm, o.at("--adapter"));
  lm->eval();
  const NamedTensors in = io::load_file(o.at("--input"));
  Tensor ids = io::find_tensor(in, "input_ids"), mask;
  for (const auto& kv : in)
    if (kv.first == "attention_mask") mask = kv.second;
  if (!load.device.is_cpu()) {
    ids = ids.to(load.device);
    if (mask.defined()) mask = mask.to(load.device);
  }
  NoGradGuard no_grad;
  Tensor logits = lm->logits(ids, mask).to(DType::F32).to(Device::cpu());
  io::save_file({{"logits", logits}}, o.at("--out"));
  std::cout << "wrote logits " << shape_str(logits.shape()) << " to " << o.at("--out") << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(argv[0]);
  const std::string cmd = argv[1];
  std::map<std::string, std::string> o;
  try {
    if (cmd == "params") {
      if (!parse(argc, argv, {"--model-config", "--r", "--lora-alpha", "--lora-dropout"}, o) || !o.count("--model-config"))
        return usage(argv[0]);
      return run_params(o);
    }
    if (cmd == "logits") {
      if (!parse(argc, argv, {"--model", "--adapter", "--input", "--out", "--device"}, o) || !o.count("--model") ||
          !o.count("--input") || !o.count("--out"))
        return usage(argv[0]);
      return run_logits(o);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return usage(argv[0]);
}
