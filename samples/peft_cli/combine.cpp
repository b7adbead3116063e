// `peft combine`: PEFT's add_weighted_adapter on folders save_pretrained wrote. Each module's
// factors are read from the files and combined by the library's combine_lora_factors (the step
// add_weighted_adapter runs per layer), so the result is the library's and PEFT's; the new
// adapter's config is weighted_adapter_config's. What needs the base model's weights is
// refused: DoRA (the magnitude vector starts from the base weight's norms), modules_to_save (the
// new adapter's copy is the base module) and lora_bias (PEFT gives the new adapter a zero bias
// and drops the inputs' ones).
#include "combine.h"

#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>

#include "peft.h"

namespace fs = std::filesystem;
using namespace peft;

namespace peft_cli {

const char* const kCombineHelp =
    "usage: peft combine --adapter DIR --adapter DIR [...] --weights W1,W2[,...] --combination-type TYPE --out DIR\n"
    "                    [--density D] [--majority-sign-method total|frequency] [--svd-rank R] [--svd-clamp Q]\n"
    "                    [--svd-reduced] [--seed S]\n"
    "Writes a new PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) combined from the given\n"
    "adapters as PEFT's add_weighted_adapter does. Linear, Conv2d and Embedding LoRA layers, rslora and rank /\n"
    "alpha patterns are supported; DoRA, lora_bias and modules_to_save adapters are refused (they need the base).\n"
    "  --adapter DIR             an input adapter folder (repeat; the order matches --weights)\n"
    "  --weights W1,W2,...       one weight per adapter (negative subtracts)\n"
    "  --combination-type TYPE   linear, cat, svd, ties, ties_svd, dare_linear, dare_ties, dare_linear_svd,\n"
    "                            dare_ties_svd, magnitude_prune, magnitude_prune_svd (one adapter: linear)\n"
    "  --density D               ties / dare_* / magnitude_prune: the fraction of values kept, in [0, 1]\n"
    "  --majority-sign-method M  ties / dare_ties: total (default) or frequency\n"
    "  --svd-rank R              *svd: the rank kept (default: the largest input rank)\n"
    "  --svd-clamp Q             *svd: clamp the factors to the Q-quantile of their values\n"
    "  --svd-reduced             *svd: PEFT's svd_full_matrices=False (same result)\n"
    "  --seed S                  dare_*: the seed of the random masks (default 0)\n"
    "  --out DIR                 the new adapter's folder (created; not an input folder)\n";

namespace {

struct Factors {
  std::string key_A, key_B;  // the keys they were saved under
  Tensor A, B;
  bool embedding = false;
};

struct InputAdapter {
  std::string dir;
  LoraConfig config;
  std::map<std::string, Factors> modules;  // module path (without "base_model.model.") → factors
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

double number_option(const std::string& option, const std::string& text) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  throw UsageError(option + " needs a number, got '" + text + "'");
}

int64_t integer_option(const std::string& option, const std::string& text) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  throw UsageError(option + " needs a non-negative integer, got '" + text + "'");
}

InputAdapter read_adapter(const std::string& dir) {
  const std::string prefix = "combine: adapter '" + dir + "': ";
  PEFT_CHECK(fs::is_directory(dir), prefix, "not a directory");
  const fs::path weights = fs::path(dir) / "adapter_model.safetensors";
  PEFT_CHECK(fs::exists(fs::path(dir) / "adapter_config.json"), prefix, "adapter_config.json not found");
  PEFT_CHECK(fs::exists(weights), prefix, "adapter_model.safetensors not found");
  InputAdapter in;
  in.dir = dir;
  std::vector<std::string> warnings;
  in.config = LoraConfig::from_pretrained(dir, &warnings);
  for (const auto& w : warnings) std::cerr << "peft combine: warning: " << dir << ": " << w << "\n";
  in.config.validate();
  PEFT_CHECK(!in.config.use_dora, prefix, "DoRA adapters cannot be combined from files: the new adapter's magnitude "
             "vector starts from the base weights (use add_weighted_adapter on a model)");
  PEFT_CHECK(!in.config.lora_bias, prefix, "lora_bias adapters cannot be combined (PEFT drops the inputs' biases)");
  PEFT_CHECK(!in.config.modules_to_save || in.config.modules_to_save->empty(), prefix, "modules_to_save cannot be "
             "combined from files: the new adapter's copy is the base module (use add_weighted_adapter on a model)");

  const io::SafetensorsFile f = io::SafetensorsFile::open(weights.string());
  const std::string model_prefix = "base_model.model.";
  for (const auto& e : f.entries()) {
    std::string module;
    bool is_A = false, embedding = false;
    for (const auto& [suffix, a, emb] : {std::tuple<const char*, bool, bool>{".lora_A.weight", true, false},
                                         {".lora_B.weight", false, false},
                                         {".lora_embedding_A", true, true},
                                         {".lora_embedding_B", false, true}})
      if (ends_with(e.name, suffix)) {
        module = e.name.substr(0, e.name.size() - std::string(suffix).size());
        is_A = a;
        embedding = emb;
      }
    PEFT_CHECK(!module.empty(), prefix, "tensor '", e.name, "' is not a LoRA factor combine knows (lora_A.weight, "
               "lora_B.weight, lora_embedding_A, lora_embedding_B)");
    if (module.compare(0, model_prefix.size(), model_prefix) == 0) module = module.substr(model_prefix.size());
    Factors& fac = in.modules[module];
    fac.embedding = embedding;
    (is_A ? fac.key_A : fac.key_B) = e.name;
    (is_A ? fac.A : fac.B) = io::load_tensor(f, e.name);
  }
  PEFT_CHECK(!in.modules.empty(), prefix, "the adapter has no LoRA tensors");
  for (const auto& [module, fac] : in.modules) {
    PEFT_CHECK(!fac.key_A.empty() && !fac.key_B.empty(), prefix, "module '", module, "' has ",
               fac.key_A.empty() ? "lora_B" : "lora_A", " but not ", fac.key_A.empty() ? "lora_A" : "lora_B");
    const int64_t r = in.config.settings_for(module).r;
    PEFT_CHECK(fac.A.dim() >= 2 && fac.B.dim() >= 2 && fac.A.size(0) == r && fac.B.size(1) == r, prefix, "module '",
               module, "': lora_A / lora_B do not have the rank ", r, " adapter_config.json gives it");
  }
  return in;
}

}  // namespace

int cmd_combine(const Args& a) {
  if (!a.positional.empty()) throw UsageError("combine takes no positional arguments (got '" + a.positional[0] + "')");
  const auto dirs_it = a.repeated.find("--adapter");
  if (dirs_it == a.repeated.end()) throw UsageError("combine needs --adapter (one per adapter)");
  const std::vector<std::string>& dirs = dirs_it->second;
  for (const char* req : {"--weights", "--combination-type", "--out"})
    if (!a.options.count(req)) throw UsageError(std::string("combine needs ") + req);
  std::vector<double> weights;
  {
    std::stringstream ss(a.options.at("--weights"));
    std::string item;
    while (std::getline(ss, item, ',')) weights.push_back(number_option("--weights", item));
  }
  if (weights.size() != dirs.size())
    throw UsageError("--weights has " + std::to_string(weights.size()) + " value(s) for " +
                     std::to_string(dirs.size()) + " adapter(s)");

  WeightedAdapterOptions o;
  o.combination_type = a.options.at("--combination-type");
  if (auto it = a.options.find("--density"); it != a.options.end()) o.density = number_option("--density", it->second);
  if (auto it = a.options.find("--majority-sign-method"); it != a.options.end()) o.majority_sign_method = it->second;
  if (auto it = a.options.find("--svd-rank"); it != a.options.end()) o.svd_rank = integer_option("--svd-rank", it->second);
  if (auto it = a.options.find("--svd-clamp"); it != a.options.end()) o.svd_clamp = number_option("--svd-clamp", it->second);
  if (a.options.count("--svd-reduced")) o.svd_full_matrices = false;
  uint64_t seed = 0;
  if (auto it = a.options.find("--seed"); it != a.options.end())
    seed = static_cast<uint64_t>(integer_option("--seed", it->second));
  if (a.options.count("--seed") && o.combination_type.rfind("dare_", 0) != 0)
    throw UsageError("--seed applies to the dare_* combination types only");
  try {
    validate_weighted_adapter_options(o);
  } catch (const Error& e) {
    // Without the throwing source's "file.cpp:123: ": the message is for a user.
    static const std::regex source_prefix(R"(^[A-Za-z0-9_./+-]+\.(cpp|h):[0-9]+: )");
    throw UsageError(std::regex_replace(std::string(e.what()), source_prefix, "", std::regex_constants::format_first_only));
  }

  const std::string out = a.options.at("--out");
  std::vector<InputAdapter> inputs;
  for (const auto& d : dirs) {
    std::error_code ec;
    PEFT_CHECK(!(fs::exists(out, ec) && fs::equivalent(out, d, ec)), "combine: --out '", out,
               "' is an input adapter folder; refusing to overwrite an input");
    inputs.push_back(read_adapter(d));
  }
  if (inputs.size() == 1 && o.combination_type != "linear") {
    std::cerr << "peft combine: note: one adapter can only be scaled: combination type linear (as PEFT)\n";
    o.combination_type = "linear";
  }
  std::vector<int64_t> ranks;
  std::vector<const LoraConfig*> configs;
  for (const auto& in : inputs) {
    ranks.push_back(largest_rank(in.config));
    configs.push_back(&in.config);
  }
  const int64_t new_rank = weighted_adapter_rank(ranks, o);
  LoraConfig cfg = weighted_adapter_config(configs, new_rank);
  cfg.validate();

  // Every module any input adapts, in name order (DARE draws its masks in this order).
  std::set<std::string> modules;
  for (const auto& in : inputs)
    for (const auto& kv : in.modules) modules.insert(kv.first);
  Generator gen(seed);
  const merging::RandomMask mask = merging::generator_mask(gen);
  NamedTensors tensors;
  for (const std::string& module : modules) {
    std::vector<LoraFactors> factors;
    const Factors* first = nullptr;
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto it = inputs[i].modules.find(module);
      if (it == inputs[i].modules.end()) continue;
      if (!first) first = &it->second;
      PEFT_CHECK(it->second.embedding == first->embedding, "combine: module '", module,
                 "' is an Embedding LoRA in some adapters and not in others");
      factors.push_back({it->second.A, it->second.B, inputs[i].config.settings_for(module).scaling(), weights[i]});
    }
    const bool transposed = first->embedding || cfg.fan_in_fan_out;
    auto [A, B] = combine_lora_factors(factors, new_rank, transposed, o, mask, module);
    tensors.emplace_back(first->key_A, A.contiguous());
    tensors.emplace_back(first->key_B, B.contiguous());
  }

  fs::create_directories(out);
  io::save_file(tensors, (fs::path(out) / "adapter_model.safetensors").string(), {{"format", "pt"}});
  cfg.save(out);
  std::cout << "combined " << inputs.size() << " adapter(s) (" << o.combination_type << ", r=" << new_rank << ") over "
            << modules.size() << " module(s) into " << out << "\n";
  return kOk;
}

}  // namespace peft_cli
