#include "layers/hf/auto.h"

#include <filesystem>
#include <map>
#include <set>

#include "io/atomic_file.h"
#include "io/tensor_io.h"
#include "layers/hf/llama.h"
#include "layers/hf/opt.h"

namespace peft::nn::hf {

namespace fs = std::filesystem;

std::vector<std::string> supported_model_types() { return {"llama", "mistral", "mt5", "opt", "qwen2", "t5"}; }

bool is_encoder_decoder_model_type(const std::string& t) { return t == "t5" || t == "mt5"; }

namespace {

std::shared_ptr<PretrainedModel> build_any(const HfConfig& c) {
  const std::string& t = c.model_type();
  if (t == "llama" || t == "mistral" || t == "qwen2") return std::make_shared<LlamaForCausalLM>(c);
  if (t == "opt") return std::make_shared<OPTForCausalLM>(c);
  if (is_encoder_decoder_model_type(t)) return std::make_shared<T5ForConditionalGeneration>(c);
  std::string list;
  for (const auto& s : supported_model_types()) list += (list.empty() ? "" : ", ") + s;
  PEFT_ERROR(c.source(), ": model_type \"", t, "\" is not supported (supported: ", list, ")");
}

std::shared_ptr<CausalLM> build(const HfConfig& c) {
  PEFT_CHECK(!is_encoder_decoder_model_type(c.model_type()), c.source(), ": model_type \"", c.model_type(),
             "\" is an encoder-decoder model: load it with seq2seq_from_pretrained / seq2seq_lm_from_config");
  return std::static_pointer_cast<CausalLM>(build_any(c));
}

std::shared_ptr<T5ForConditionalGeneration> build_seq2seq(const HfConfig& c) {
  PEFT_CHECK(is_encoder_decoder_model_type(c.model_type()), c.source(), ": model_type \"", c.model_type(),
             "\" is not an encoder-decoder model (t5, mt5): load it with from_pretrained / causal_lm_from_config");
  return std::static_pointer_cast<T5ForConditionalGeneration>(build_any(c));
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Every tensor of the checkpoint in `dir`, single file or sharded.
NamedTensors read_checkpoint(const std::string& dir) {
  const fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(single)) return io::load_file(single.string());
  PEFT_CHECK(fs::exists(index), "no model.safetensors or model.safetensors.index.json in ", dir,
             " (PyTorch .bin checkpoints are not read: convert them with save_pretrained(safe_serialization=True))");
  const nlohmann::json j = read_json_file(index.string(), "a safetensors shard index");
  PEFT_CHECK(j.contains("weight_map") && j.at("weight_map").is_object(), index.string(), ": no \"weight_map\" object");
  std::map<std::string, std::set<std::string>> by_file;  // shard → keys it should hold
  for (const auto& [key, file] : j.at("weight_map").items()) {
    PEFT_CHECK(file.is_string(), index.string(), ": weight_map[\"", key, "\"] is not a file name");
    const std::string f = file.get<std::string>();
    PEFT_CHECK(f.find('/') == std::string::npos && f.find('\\') == std::string::npos, index.string(),
               ": shard name \"", f, "\" is not a plain file name");
    by_file[f].insert(key);
  }
  NamedTensors out;
  for (const auto& [file, keys] : by_file) {
    NamedTensors shard = io::load_file((fs::path(dir) / file).string());
    std::set<std::string> found;
    for (auto& kv : shard)
      if (keys.count(kv.first)) found.insert(kv.first), out.push_back(std::move(kv));
    for (const auto& k : keys)
      PEFT_CHECK(found.count(k), index.string(), ": \"", k, "\" is mapped to ", file, ", which does not hold it");
  }
  return out;
}

std::string list_some(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > 8) s += ", ... (" + std::to_string(v.size()) + " in all)";
  return s;
}

}  // namespace

std::shared_ptr<CausalLM> causal_lm_from_config(const HfConfig& config) {
  auto m = build(config);
  m->init_weights();
  return m;
}

std::shared_ptr<T5ForConditionalGeneration> seq2seq_lm_from_config(const HfConfig& config) {
  auto m = build_seq2seq(config);
  m->init_weights();
  return m;
}

std::shared_ptr<PretrainedModel> model_from_config(const HfConfig& config) {
  auto m = build_any(config);
  m->init_weights();
  return m;
}

void load_pretrained_weights(PretrainedModel& model, const std::string& dir) {
  NamedTensors ckpt = read_checkpoint(dir);
  std::set<std::string> in_file;
  NamedTensors use;
  for (auto& kv : ckpt) {
    if (ends_with(kv.first, "rotary_emb.inv_freq")) continue;  // non-persistent in transformers today
    in_file.insert(kv.first);
    use.push_back(std::move(kv));
  }
  std::map<std::string, std::string> alias;
  for (const auto& [a, src] : model.tied_weights()) alias[a] = src;
  std::vector<std::string> missing, unexpected;
  std::set<std::string> known;
  for (const auto& [name, t] : model.state_dict()) {
    known.insert(name);
    if (in_file.count(name)) continue;
    auto it = alias.find(name);
    if (it != alias.end() && in_file.count(it->second)) continue;
    missing.push_back(name);
  }
  for (const auto& k : in_file)
    if (!known.count(k)) unexpected.push_back(k);
  PEFT_CHECK(missing.empty(), dir, ": the checkpoint lacks ", missing.size(), " weight(s) of ", model.type_name(), ": ",
             list_some(missing));
  PEFT_CHECK(unexpected.empty(), dir, ": the checkpoint has ", unexpected.size(), " weight(s) that ", model.type_name(),
             " does not (another architecture or config?): ", list_some(unexpected));
  model.load_state_dict(use, /*strict=*/false);  // checks every shape before copying any
}

std::shared_ptr<CausalLM> from_pretrained(const std::string& dir, const LoadOptions& options) {
  auto m = build(HfConfig::from_file(dir));
  load_pretrained_weights(*m, dir);
  if (options.dtype != DType::F32) m->to(options.dtype);
  if (!options.device.is_cpu()) m->to(options.device);
  return m;
}

std::shared_ptr<T5ForConditionalGeneration> seq2seq_from_pretrained(const std::string& dir, const LoadOptions& options) {
  auto m = build_seq2seq(HfConfig::from_file(dir));
  load_pretrained_weights(*m, dir);
  if (options.dtype != DType::F32) m->to(options.dtype);
  if (!options.device.is_cpu()) m->to(options.device);
  return m;
}

void save_pretrained(const PretrainedModel& model, const std::string& dir) {
  fs::create_directories(dir);
  std::set<std::string> aliases;
  for (const auto& [a, src] : model.tied_weights()) aliases.insert(a);
  NamedTensors out;
  for (const auto& kv : model.state_dict())
    if (!aliases.count(kv.first)) out.push_back(kv);
  io::save_file(out, (fs::path(dir) / "model.safetensors").string(), {{"format", "pt"}});
  io::write_file_atomic((fs::path(dir) / "config.json").string(), model.config().json().dump(2) + "\n");
}

}  // namespace peft::nn::hf
