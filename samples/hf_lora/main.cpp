// hf_lora: LoRA on transformers models from C++: decoders (OPT, Llama, Mistral, Qwen2) and, for
// every command, encoder-decoders (T5, mT5 / mt0).
//   hf_lora params --model-config CONFIG.json [--r R] [--lora-alpha A] [--lora-dropout P]
//       PEFT's print_trainable_parameters() line for the model with PEFT's default LoRA targets
//       for its model_type (task type SEQ_2_SEQ_LM for t5 / mt5, else CAUSAL_LM), built on the meta
//       device from the config alone: no weights read or allocated.
//   hf_lora logits --model DIR [--adapter DIR] --input IN.safetensors --out OUT.safetensors [--device cpu|cuda]
//       IN: "input_ids" (I64 [B, T]) and optionally "attention_mask" (I64 [B, T], left padding);
//       OUT: "logits" (F32 [B, T, V]) in eval mode, with the PEFT adapter when given. T5 / mT5: IN
//       also holds "decoder_input_ids" (I64 [B, Td]), input padding is on the right (T5's tokenizers),
//       and OUT's logits are [B, Td, V].
//   hf_lora generate --model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N] [--device cpu|cuda]
//                    [--do-sample 0|1] [--temperature T] [--top-k K] [--top-p P] [--seed S]
//       Prints the prompt and its continuation (greedy unless --do-sample 1), decoded with the special
//       tokens skipped, as tokenizer.decode(model.generate(...)[0], skip_special_tokens=True) does;
//       stops at the eos_token_id of DIR's generation_config.json (else config.json). T5 / mT5 print
//       the decoder's output only, as decoding their generate() ids does.
//   hf_lora train --model DIR --data TEXT_FILE --out ADAPTER_DIR [--r R] [--lora-alpha A] [--lora-dropout P]
//                 [--block-size 128] [--batch-size 4] [--epochs 1] [--max-steps N] [--lr 2e-4] [--seed 0]
//                 [--log-every 10] [--device cpu|cuda] [--bf16]
//       LoRA fine-tuning (PEFT's default targets for the model type) on the text file, cut into blocks
//       as transformers' run_clm.py does (train.cpp); prints the mean loss over the blocks before and
//       after, a progress line every --log-every steps, and saves a PEFT adapter to ADAPTER_DIR.
//       T5 / mT5 folders: --data is a TSV of "source<TAB>target" lines ([--max-source-length 1024]
//       [--max-target-length 128], run_translation.py's preparation; train_seq2seq.cpp).
//       Under `mpirun -np K` (a build with MPI) it trains data-parallel: --batch-size stays the
//       global batch, each rank runs its shard, gradients are weighted by each rank's share of the
//       batch's label tokens, rank 0 prints and saves the adapter one process would save (1e-5).
// DIR is a transformers save_pretrained folder (config.json + model.safetensors or a sharded
// index; generate and train also read its tokenizer.json); the adapter folder is PEFT's
// (adapter_config.json + adapter_model.safetensors).
// Exit status: 0 done, 1 error (message on stderr), 2 usage.
#include <peft/peft.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>

#include "train.h"

using namespace peft;
namespace hf = peft::nn::hf;

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s params --model-config CONFIG.json [--r R] [--lora-alpha A] [--lora-dropout P]\n"
               "       %s logits --model DIR [--adapter DIR] --input IN.safetensors --out OUT.safetensors "
               "[--device cpu|cuda]\n"
               "       %s generate --model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N] [--device cpu|cuda]\n"
               "                [--do-sample 0|1] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
               "       %s train --model DIR --data TEXT_FILE --out ADAPTER_DIR [--r R] [--lora-alpha A] "
               "[--lora-dropout P]\n"
               "                [--block-size N] [--batch-size N] [--epochs N] [--max-steps N] [--lr LR] [--seed S]\n"
               "                [--log-every N] [--device cpu|cuda] [--bf16]\n"
               "                (T5 / mT5: --data SOURCE<TAB>TARGET lines, [--max-source-length N] [--max-target-length N])\n",
               argv0, argv0, argv0, argv0);
  return 2;
}

// "--key value" pairs (and value-less `flags`, stored as "1") after the subcommand; false on a
// missing value, a repeat or an unknown key.
bool parse(int argc, char** argv, const std::set<std::string>& known, std::map<std::string, std::string>& out,
           const std::set<std::string>& flags = {}) {
  for (int i = 2; i < argc; ++i) {
    const std::string key = argv[i];
    if (out.count(key)) return false;
    if (flags.count(key)) {
      out[key] = "1";
    } else if (known.count(key) && i + 1 < argc) {
      out[key] = argv[++i];
    } else {
      return false;
    }
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

int64_t integer(const std::map<std::string, std::string>& o, const std::string& key, int64_t def, int64_t min) {
  const double v = number(o, key, static_cast<double>(def));
  PEFT_CHECK(v == std::floor(v) && v >= static_cast<double>(min), key, " expects an integer >= ", min, ", got '",
             o.count(key) ? o.at(key) : std::to_string(def), "'");
  return static_cast<int64_t>(v);
}

int run_params(const std::map<std::string, std::string>& o) {
  const hf::HfConfig config = hf::HfConfig::from_file(o.at("--model-config"));
  // Built on the meta device: parameter shapes and counts without their memory or random init,
  // so a 7B config counts in milliseconds (the LoRA layers are made on the CPU and moved there).
  std::shared_ptr<hf::PretrainedModel> lm;
  {
    MetaDeviceGuard meta;
    lm = hf::model_from_config(config);
  }
  LoraConfig cfg;
  cfg.task_type = lm->is_encoder_decoder() ? "SEQ_2_SEQ_LM" : "CAUSAL_LM";
  cfg.r = integer(o, "--r", 8, 1);
  cfg.lora_alpha = number(o, "--lora-alpha", 8);
  cfg.lora_dropout = number(o, "--lora-dropout", 0.0);
  get_peft_model(lm, cfg)->print_trainable_parameters(std::cout);
  return 0;
}

Tensor optional_tensor(const NamedTensors& in, const std::string& key) {
  for (const auto& kv : in)
    if (kv.first == key) return kv.second;
  return Tensor();
}

int run_logits(const std::map<std::string, std::string>& o) {
  hf::LoadOptions load;
  if (o.count("--device")) load.device = Device::parse(o.at("--device"));
  const bool seq2seq = hf::is_encoder_decoder_model_type(hf::HfConfig::from_file(o.at("--model")).model_type());
  std::shared_ptr<hf::CausalLM> lm;
  std::shared_ptr<hf::T5ForConditionalGeneration> s2s;
  std::shared_ptr<hf::PretrainedModel> model;
  if (seq2seq) model = s2s = hf::seq2seq_from_pretrained(o.at("--model"), load);
  else model = lm = hf::from_pretrained(o.at("--model"), load);
  std::shared_ptr<PeftModel> pm;
  if (o.count("--adapter")) pm = PeftModel::from_pretrained(model, o.at("--adapter"));
  model->eval();
  const NamedTensors in = io::load_file(o.at("--input"));
  auto on_device = [&](Tensor t) { return t.defined() && !load.device.is_cpu() ? t.to(load.device) : t; };
  const Tensor ids = on_device(io::find_tensor(in, "input_ids")), mask = on_device(optional_tensor(in, "attention_mask"));
  NoGradGuard no_grad;
  Tensor logits;
  if (seq2seq) {
    const Tensor dec = optional_tensor(in, "decoder_input_ids");
    PEFT_CHECK(dec.defined(), o.at("--input"), ": an encoder-decoder model (", model->model_type(),
               ") needs \"decoder_input_ids\" (I64 [B, Td]) beside input_ids");
    logits = s2s->logits(ids, mask, on_device(dec));
  } else {
    logits = lm->logits(ids, mask);
  }
  logits = logits.to(DType::F32).to(Device::cpu());
  io::save_file({{"logits", logits}}, o.at("--out"));
  std::cout << "wrote logits " << shape_str(logits.shape()) << " to " << o.at("--out") << "\n";
  return 0;
}

// The eos / pad ids generate() uses: generation_config.json's, else config.json's.
void stop_tokens(const std::string& dir, hf::GenerationConfig& g) {
  std::vector<nlohmann::json> sources;
  if (std::ifstream(dir + "/generation_config.json").good())
    sources.push_back(hf::read_json_file(dir + "/generation_config.json", "a generation config"));
  sources.push_back(hf::read_json_file(dir + "/config.json", "a transformers config"));
  auto id_of = [](const nlohmann::json& v, const char* key) -> int64_t {
    // A list of eos ids: generate() here stops at one; the first is transformers' eos_token_id.
    const nlohmann::json& e = v.is_array() && !v.empty() ? v.at(0) : v;
    PEFT_CHECK(e.is_number_integer(), key, " is not an integer or a list of integers: ", v.dump());
    return e.get<int64_t>();
  };
  bool have_pad = false;
  for (const nlohmann::json& j : sources) {
    if (!g.eos_token_id && j.contains("eos_token_id") && !j.at("eos_token_id").is_null())
      g.eos_token_id = id_of(j.at("eos_token_id"), "eos_token_id");
    if (!have_pad && j.contains("pad_token_id") && !j.at("pad_token_id").is_null()) {
      g.pad_token_id = id_of(j.at("pad_token_id"), "pad_token_id");
      have_pad = true;
    }
  }
}

int run_generate(const std::map<std::string, std::string>& o) {
  const std::string dir = o.at("--model");
  const io::Tokenizer tok = io::Tokenizer::from_pretrained(dir);
  hf::LoadOptions load;
  if (o.count("--device")) load.device = Device::parse(o.at("--device"));
  const bool seq2seq = hf::is_encoder_decoder_model_type(hf::HfConfig::from_file(dir).model_type());
  std::shared_ptr<hf::CausalLM> lm;
  std::shared_ptr<hf::T5ForConditionalGeneration> s2s;
  std::shared_ptr<hf::PretrainedModel> model;
  if (seq2seq) model = s2s = hf::seq2seq_from_pretrained(dir, load);
  else model = lm = hf::from_pretrained(dir, load);
  std::shared_ptr<PeftModel> pm;
  if (o.count("--adapter")) pm = PeftModel::from_pretrained(model, o.at("--adapter"));
  hf::GenerationConfig g;
  g.max_new_tokens = integer(o, "--max-new-tokens", 20, 1);
  g.do_sample = integer(o, "--do-sample", 0, 0) != 0;
  g.temperature = number(o, "--temperature", 1.0);
  g.top_k = integer(o, "--top-k", 50, 0);
  g.top_p = number(o, "--top-p", 1.0);
  stop_tokens(dir, g);
  const std::vector<int64_t> prompt = tok.encode(o.at("--prompt"));
  PEFT_CHECK(!prompt.empty(), "the prompt gives no tokens");
  Generator gen(static_cast<uint64_t>(integer(o, "--seed", 0, 0)));
  Tensor ids = Tensor::from_vector(prompt, {1, static_cast<int64_t>(prompt.size())}).to(load.device);
  // An encoder-decoder model prints its output only (transformers' decode of generate()'s ids).
  const Tensor out = seq2seq ? hf::generate(*s2s, ids, Tensor(), g, &gen) : hf::generate(*lm, ids, Tensor(), g, &gen);
  std::cout << tok.decode(out.to_vector<int64_t>(), true) << "\n";
  return 0;
}

int run_train(const std::map<std::string, std::string>& o) {
  hf_lora::TrainOptions t;
  t.model = o.at("--model");
  t.data = o.at("--data");
  t.out = o.at("--out");
  t.r = integer(o, "--r", t.r, 1);
  t.lora_alpha = number(o, "--lora-alpha", t.lora_alpha);
  t.lora_dropout = number(o, "--lora-dropout", t.lora_dropout);
  t.block_size = integer(o, "--block-size", t.block_size, 2);
  t.batch_size = integer(o, "--batch-size", t.batch_size, 1);
  t.epochs = integer(o, "--epochs", t.epochs, 1);
  t.max_steps = integer(o, "--max-steps", t.max_steps, 0);
  t.lr = number(o, "--lr", t.lr);
  PEFT_CHECK(t.lr > 0, "--lr must be positive");
  t.seed = static_cast<uint64_t>(integer(o, "--seed", 0, 0));
  t.log_every = integer(o, "--log-every", t.log_every, 1);
  t.max_source_length = integer(o, "--max-source-length", t.max_source_length, 1);
  t.max_target_length = integer(o, "--max-target-length", t.max_target_length, 1);
  if (o.count("--device")) t.device = Device::parse(o.at("--device"));
  // Data-parallel on GPUs: "cuda" means this rank's GPU (one per rank, by node-local rank).
  if (o.count("--device") && o.at("--device") == "cuda" && dist::world().size() > 1 && cuda_device_count() > 0)
    t.device = Device::cuda(dist::local_rank() % cuda_device_count());
  t.bf16 = o.count("--bf16") > 0;
  return hf_lora::run_train(t);
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
    if (cmd == "generate") {
      if (!parse(argc, argv, {"--model", "--adapter", "--prompt", "--max-new-tokens", "--device", "--do-sample",
                              "--temperature", "--top-k", "--top-p", "--seed"}, o) ||
          !o.count("--model") || !o.count("--prompt"))
        return usage(argv[0]);
      return run_generate(o);
    }
    if (cmd == "train") {
      if (!parse(argc, argv, {"--model", "--data", "--out", "--r", "--lora-alpha", "--lora-dropout", "--block-size",
                              "--batch-size", "--epochs", "--max-steps", "--lr", "--seed", "--log-every", "--device",
                              "--max-source-length", "--max-target-length"},
                 o, {"--bf16"}) ||
          !o.count("--model") || !o.count("--data") || !o.count("--out"))
        return usage(argv[0]);
      // Under mpirun: an exception on any rank ends the whole job naming that rank.
      return dist::run_guarded([&] { return run_train(o); });
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return usage(argv[0]);
}
