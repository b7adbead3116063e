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

// The checkpoint in `dir`, single file or sharded, mapped: tensors are read one at a time on
// demand, so loading never holds a second copy of the model.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir) {
    const fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
    if (fs::exists(single)) {
      files_.push_back(io::SafetensorsFile::open(single.string()));
      for (const auto& e : files_[0].entries()) add(e.name, 0);
      return;
    }
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
    for (const auto& [file, keys] : by_file) {
      files_.push_back(io::SafetensorsFile::open((fs::path(dir) / file).string()));
      for (const auto& k : keys) {
        PEFT_CHECK(files_.back().find(k) != nullptr, index.string(), ": \"", k, "\" is mapped to ", file,
                   ", which does not hold it");
        add(k, files_.size() - 1);
      }
    }
  }
  // In file order (shards by name); rotary inv_freq buffers of old checkpoints left out.
  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& name) const { return where_.count(name) > 0; }
  const io::SafetensorsEntry& entry(const std::string& name) const { return files_[where_.at(name)].at(name); }
  Tensor load(const std::string& name) const { return io::load_tensor(files_[where_.at(name)], name); }

 private:
  void add(const std::string& name, size_t file) {
    if (ends_with(name, "rotary_emb.inv_freq")) return;  // non-persistent in transformers today
    if (where_.emplace(name, file).second) names_.push_back(name);
  }
  std::vector<io::SafetensorsFile> files_;
  std::map<std::string, size_t> where_;
  std::vector<std::string> names_;
};

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

namespace {

// For each tensor of the model's state (tied aliases once), the checkpoint key holding its value;
// refuses missing and unexpected weights, naming them.
std::vector<std::pair<Tensor, std::string>> plan_load(PretrainedModel& model, const Checkpoint& ckpt,
                                                      const std::string& dir) {
  std::map<std::string, std::string> alias;
  for (const auto& [a, src] : model.tied_weights()) alias[a] = src;
  std::vector<std::string> missing, unexpected;
  std::set<std::string> known;
  std::set<const void*> seen;
  std::vector<std::pair<Tensor, std::string>> plan;
  for (const auto& [name, t] : model.state_dict()) {
    known.insert(name);
    std::string key = name;
    if (!ckpt.has(name)) {
      auto it = alias.find(name);
      if (it == alias.end() || !ckpt.has(it->second)) {
        missing.push_back(name);
        continue;
      }
      key = it->second;
    }
    if (!seen.insert(t.unsafe_impl()).second) continue;
    const io::SafetensorsEntry& e = ckpt.entry(key);
    PEFT_CHECK(e.shape == t.shape(), dir, ": weight ", key, " has shape ", shape_str(e.shape), " in the checkpoint but ",
               model.type_name(), " expects ", shape_str(t.shape()), " for ", name);
    plan.emplace_back(t, key);
  }
  for (const auto& k : ckpt.names())
    if (!known.count(k)) unexpected.push_back(k);
  PEFT_CHECK(missing.empty(), dir, ": the checkpoint lacks ", missing.size(), " weight(s) of ", model.type_name(), ": ",
             list_some(missing));
  PEFT_CHECK(unexpected.empty(), dir, ": the checkpoint has ", unexpected.size(), " weight(s) that ", model.type_name(),
             " does not (another architecture or config?): ", list_some(unexpected));
  return plan;
}

// Builds the model on the meta device (no memory, no random initialisation), then gives each
// parameter its checkpoint value converted straight to the requested dtype and device: one
// tensor at a time, so the peak is the model in its final dtype plus one tensor.
template <class M>
std::shared_ptr<M> load_on_meta(std::shared_ptr<M> (*build_fn)(const HfConfig&), const std::string& dir,
                                const LoadOptions& options) {
  const HfConfig config = HfConfig::from_file(dir);
  std::shared_ptr<M> m;
  {
    MetaDeviceGuard meta;
    m = build_fn(config);
  }
  const Checkpoint ckpt(dir);
  std::vector<Tensor> targets, values;
  for (auto& [t, key] : plan_load(*m, ckpt, dir)) {
    Tensor v = ckpt.load(key);
    if (is_floating(v.dtype()) && v.dtype() != options.dtype) v = v.to(options.dtype);
    if (v.device() != options.device) v = v.to(options.device);
    targets.push_back(t);
    values.push_back(std::move(v));
  }
  assign_in_place(targets, values);
  return m;
}

}  // namespace

void load_pretrained_weights(PretrainedModel& model, const std::string& dir) {
  const Checkpoint ckpt(dir);
  StateDict use;
  for (auto& [t, key] : plan_load(model, ckpt, dir)) use.emplace_back(key, ckpt.load(key));
  model.load_state_dict(use, /*strict=*/false);  // checks every shape before copying any
}

std::shared_ptr<CausalLM> from_pretrained(const std::string& dir, const LoadOptions& options) {
  return load_on_meta<CausalLM>(build, dir, options);
}

std::shared_ptr<T5ForConditionalGeneration> seq2seq_from_pretrained(const std::string& dir, const LoadOptions& options) {
  return load_on_meta<T5ForConditionalGeneration>(build_seq2seq, dir, options);
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
