#include "adapters/lora_config.h"

#include <cxxabi.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <regex>
#include <map>
#include <set>
#include <sstream>

#include "adapters/lora_init.h"
#include "io/atomic_file.h"

namespace peft {

std::string short_type_name(const std::type_info& t) {
  int status = 0;
  char* d = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
  std::string name = (status == 0 && d) ? d : t.name();
  std::free(d);
  auto pos = name.rfind("::");
  return pos == std::string::npos ? name : name.substr(pos + 2);
}

// ---------------------------------------------------------------- ModuleSelector

const std::vector<std::string>& ModuleSelector::names() const {
  PEFT_CHECK(names_.has_value(), "ModuleSelector: not a list of names");
  return *names_;
}

const std::string& ModuleSelector::regex() const {
  PEFT_CHECK(regex_.has_value(), "ModuleSelector: not a regex");
  return *regex_;
}

bool ModuleSelector::is_all_linear() const {
  if (!regex_ || regex_->size() != std::char_traits<char>::length(kAllLinear)) return false;
  std::string lower = *regex_;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == kAllLinear;
}

std::string ModuleSelector::describe() const {
  if (regex_) return *regex_;
  if (!names_) return "None";
  std::set<std::string> sorted(names_->begin(), names_->end());
  std::string s = "{";
  for (const auto& n : sorted) s += (s.size() > 1 ? ", '" : "'") + n + "'";
  return s + "}";
}

nlohmann::json ModuleSelector::to_json() const {
  if (regex_) return *regex_;
  if (!names_) return nullptr;
  std::set<std::string> sorted(names_->begin(), names_->end());  // PEFT stores a set
  return nlohmann::json(std::vector<std::string>(sorted.begin(), sorted.end()));
}

ModuleSelector ModuleSelector::from_json(const nlohmann::json& j, const char* field) {
  if (j.is_null()) return {};
  if (j.is_string()) return Regex{j.get<std::string>()};
  PEFT_CHECK(j.is_array(), "adapter_config.json: '", field, "' must be null, a string or a list of strings, got ", j.dump());
  std::vector<std::string> names;
  for (const auto& e : j) {
    PEFT_CHECK(e.is_string(), "adapter_config.json: '", field, "' must hold strings, got ", e.dump());
    names.push_back(e.get<std::string>());
  }
  return names;
}

// ---------------------------------------------------------------- settings

double LoraLayerSettings::scaling() const {
  return use_rslora ? lora_alpha / std::sqrt(static_cast<double>(r)) : lora_alpha / static_cast<double>(r);
}

namespace {
// PEFT's get_pattern_key: K matches a name when (.*\.)?(K)$ matches it.
template <class V>
const std::pair<std::string, V>* find_pattern(const std::vector<std::pair<std::string, V>>& patterns,
                                              const std::string& name) {
  for (const auto& kv : patterns) {
    if (kv.first == name) return &kv;
    if (std::regex_match(name, std::regex("(.*\\.)?(" + kv.first + ")"))) return &kv;
  }
  return nullptr;
}
}  // namespace

LoraLayerSettings LoraConfig::settings_for(const std::string& module_name) const {
  LoraLayerSettings s;
  s.r = r;
  s.lora_alpha = lora_alpha;
  if (auto* p = find_pattern(rank_pattern, module_name)) s.r = p->second;
  if (auto* p = find_pattern(alpha_pattern, module_name)) s.lora_alpha = p->second;
  s.lora_dropout = lora_dropout;
  s.init = init_lora_weights;
  s.pissa_niter = pissa_niter;
  s.use_rslora = use_rslora;
  s.use_dora = use_dora;
  s.lora_bias = lora_bias;
  return s;
}

namespace {
// libstdc++'s std::regex compiles (and matches) by recursion: one stack frame per term and per
// nesting level, so a pattern of ~100k characters or ~20k nested groups overflows the stack
// instead of throwing. Patterns come from adapter_config.json (untrusted), so they are bounded
// well below that (real target_modules regexes are a few hundred characters) before compiling.
constexpr size_t kMaxRegexChars = 8192;
constexpr int kMaxRegexNesting = 64;
// Counted repetition: libstdc++ reads a {m,n} count into a long without an overflow check
// (signed overflow on {11111111111111111111}, found by fuzz_adapter_config) and copies the
// repeated atom count times, nested counts multiplying. So every count is at most 1000 and
// their product too (real target_modules patterns use at most a `\d{1,3}` or two).
constexpr long kMaxRegexRepeat = 1000;

std::string quoted(const std::string& p) { return "'" + p.substr(0, 80) + (p.size() > 80 ? "...'" : "'"); }

// Checks the counts of every {m}, {m,} and {m,n} outside a [...] class, and escaped numbers.
void check_regex_repeats(const std::string& pattern, const char* what) {
  long product = 1;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {  // a back-reference \N is read into the same unchecked long
      size_t j = i + 1;
      while (j < pattern.size() && pattern[j] >= '0' && pattern[j] <= '9') ++j;
      PEFT_CHECK(j - (i + 1) <= 3, "LoraConfig: ", what, " ", quoted(pattern), " has an escaped number of ",
                 j - (i + 1), " digits; at most 3 are accepted");
      i = std::max(i + 1, j - 1);
      continue;
    }
    if (in_class) { in_class = c != ']'; continue; }
    if (c == '[') { in_class = true; continue; }
    if (c != '{') continue;
    long largest = 0;
    for (size_t j = i + 1; j < pattern.size() && pattern[j] != '}'; ++j) {
      if (pattern[j] < '0' || pattern[j] > '9') continue;  // the comma; anything else std::regex refuses
      long v = 0;
      for (; j < pattern.size() && pattern[j] >= '0' && pattern[j] <= '9'; ++j) {
        v = v * 10 + (pattern[j] - '0');
        PEFT_CHECK(v <= kMaxRegexRepeat, "LoraConfig: ", what, " ", quoted(pattern), " repeats something more than ",
                   kMaxRegexRepeat, " times; at most ", kMaxRegexRepeat, " are accepted");
      }
      largest = std::max(largest, v);
      --j;
    }
    product *= std::max(largest, 1L);
    PEFT_CHECK(product <= kMaxRegexRepeat, "LoraConfig: ", what, " ", quoted(pattern),
               " has counted repetitions whose counts multiply to more than ", kMaxRegexRepeat);
  }
}

void check_user_regex(const std::string& pattern, const char* what) {
  PEFT_CHECK(pattern.size() <= kMaxRegexChars, "LoraConfig: ", what, " is a regular expression of ", pattern.size(),
             " characters; at most ", kMaxRegexChars, " are accepted");
  int depth = 0, max_depth = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\') { ++i; continue; }  // an escaped character opens nothing
    if (pattern[i] == '(') max_depth = std::max(max_depth, ++depth);
    if (pattern[i] == ')') --depth;
  }
  PEFT_CHECK(max_depth <= kMaxRegexNesting, "LoraConfig: ", what, " ", quoted(pattern), " nests groups ", max_depth,
             " deep; at most ", kMaxRegexNesting, " levels are accepted");
  check_regex_repeats(pattern, what);
  try {
    std::regex re(pattern);
  } catch (const std::regex_error&) {
    PEFT_ERROR("LoraConfig: ", what, " '", pattern, "' is not a valid regular expression");
  }
}
}  // namespace

void LoraConfig::validate() const {
  PEFT_CHECK(r > 0, "`r` should be a positive integer value but the value passed is ", r);
  for (const auto& kv : rank_pattern)
    PEFT_CHECK(kv.second > 0, "`r` should be a positive integer value but the value passed is ", kv.second,
               " (rank_pattern['", kv.first, "'])");
  PEFT_CHECK(bias == "none" || bias == "all" || bias == "lora_only", "LoraConfig: bias must be 'none', 'all' or "
             "'lora_only', got '", bias, "'");
  PEFT_CHECK(lora_dropout >= 0 && lora_dropout < 1, "LoraConfig: lora_dropout must be in [0, 1), got ", lora_dropout);
  if (target_modules.is_regex()) {
    PEFT_CHECK(!layers_to_transform, "`layers_to_transform` cannot be used when `target_modules` is a str.");
    PEFT_CHECK(!layers_pattern, "`layers_pattern` cannot be used when `target_modules` is a str.");
  }
  PEFT_CHECK(!(layers_pattern && !layers_pattern->empty() && (!layers_to_transform || layers_to_transform->empty())),
             "When `layers_pattern` is specified, `layers_to_transform` must also be specified. ");
  if (lora_bias) {
    // PEFT: True or False (both leave the LoRA bias well defined); every string init is refused.
    PEFT_CHECK(init_lora_weights == LoraInit::Default || init_lora_weights == LoraInit::Random,
               "The argument lora_bias=True is only supported with init_lora_weights=True or False, got "
               "init_lora_weights=", init_lora_weights_name(init_lora_weights, pissa_niter), " instead.");
    PEFT_CHECK(!use_dora, "The argument lora_bias=True is not supported for DoRA, please pass use_dora=False");
  }
  for (const auto& kv : rank_pattern) check_user_regex(kv.first, "rank_pattern key");
  for (const auto& kv : alpha_pattern) check_user_regex(kv.first, "alpha_pattern key");
  if (target_modules.is_regex()) check_user_regex(target_modules.regex(), "target_modules");
  if (exclude_modules.is_regex()) check_user_regex(exclude_modules.regex(), "exclude_modules");
  if (layers_pattern)
    for (const auto& p : *layers_pattern) check_user_regex(p, "layers_pattern entry");
}

// ---------------------------------------------------------------- JSON

namespace {
// An alpha as PEFT writes it: the user's int stays an int (16, not 16.0). Only values an int64 holds
// exactly are written so; anything else (fractions, 1e93, inf, NaN) stays a double — casting those
// to an integer is undefined behaviour (found by fuzz_adapter_config).
nlohmann::json alpha_json(double v) {
  constexpr double kTwo53 = 9007199254740992.0;  // every integer of magnitude <= 2^53 is a double
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) <= kTwo53)
    return nlohmann::json(static_cast<int64_t>(v));
  return nlohmann::json(v);
}
}  // namespace

nlohmann::json LoraConfig::to_json() const {
  nlohmann::json j;
  j["peft_type"] = "LORA";
  j["task_type"] = task_type ? nlohmann::json(*task_type) : nlohmann::json(nullptr);
  j["base_model_name_or_path"] = base_model_name_or_path ? nlohmann::json(*base_model_name_or_path) : nlohmann::json(nullptr);
  j["revision"] = nullptr;
  if (auto_mapping && !task_type)
    j["auto_mapping"] = {{"base_model_class", auto_mapping->first}, {"parent_library", auto_mapping->second}};
  else
    j["auto_mapping"] = nullptr;
  j["inference_mode"] = inference_mode;
  j["r"] = r;
  j["lora_alpha"] = alpha_json(lora_alpha);
  j["lora_dropout"] = lora_dropout;
  j["bias"] = bias;
  j["target_modules"] = target_modules.to_json();
  j["exclude_modules"] = exclude_modules.to_json();
  j["modules_to_save"] = modules_to_save ? nlohmann::json(*modules_to_save) : nlohmann::json(nullptr);
  j["init_lora_weights"] = init_lora_weights_json(init_lora_weights, pissa_niter);
  j["use_rslora"] = use_rslora;
  j["use_dora"] = use_dora;
  j["lora_bias"] = lora_bias;
  j["fan_in_fan_out"] = fan_in_fan_out;
  j["rank_pattern"] = nlohmann::json::object();
  for (const auto& kv : rank_pattern) j["rank_pattern"][kv.first] = kv.second;
  j["alpha_pattern"] = nlohmann::json::object();
  for (const auto& kv : alpha_pattern) j["alpha_pattern"][kv.first] = alpha_json(kv.second);
  j["layers_to_transform"] = layers_to_transform ? nlohmann::json(*layers_to_transform) : nlohmann::json(nullptr);
  j["layers_pattern"] = layers_pattern ? nlohmann::json(*layers_pattern) : nlohmann::json(nullptr);
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["loftq_config"] = nlohmann::json::object();
  j["layer_replication"] = nullptr;
  j["use_qalora"] = false;
  j["qalora_group_size"] = 16;
  j["ensure_weight_tying"] = false;
  // Options of PEFT's other LoRA variants this engine does not implement: written as PEFT
  // writes their defaults, so Python PEFT reads the file without surprises.
  for (const char* k : {"alora_invocation_tokens", "arrow_config", "corda_config", "eva_config", "kasa_config",
                        "lora_ga_config", "monteclora_config", "target_parameters", "trainable_token_indices",
                        "use_bdlora", "velora_config"})
    j[k] = nullptr;
  // The PEFT release whose file format this engine reproduces.
  j["peft_version"] = kPeftFormatVersion;
  return j;
}

namespace {
template <class T>
T get_typed(const nlohmann::json& j, const char* key, const char* type_desc, bool (nlohmann::json::*pred)() const) {
  PEFT_CHECK((j.*pred)(), "adapter_config.json: '", key, "' must be ", type_desc, ", got ", j.dump());
  return j.get<T>();
}
}  // namespace

LoraConfig LoraConfig::from_json(const nlohmann::json& j, std::vector<std::string>* warnings) {
  PEFT_CHECK(j.is_object(), "adapter_config.json: expected a JSON object, got ", j.type_name());
  if (j.contains("peft_type"))
    PEFT_CHECK(j["peft_type"] == "LORA", "adapter_config.json: peft_type is ", j["peft_type"].dump(),
               ", only \"LORA\" is supported");
  LoraConfig c;
  // PEFT 0.21 options this engine does not implement and whose non-default value changes what the
  // adapter computes (or which modules it adds): refused naming the key, never dropped. Their
  // defaults (null, false, an empty list or object) are accepted.
  static const std::map<std::string, const char*> unsupported = {
      {"alora_invocation_tokens", "activated LoRA (aLoRA)"},
      {"arrow_config", "Arrow routing between LoRA experts"},
      {"ensure_weight_tying", "weight tying of modules_to_save / trainable tokens"},
      {"kasa_config", "KaSA"},
      {"layer_replication", "layer replication (LoRA on duplicated layers)"},
      {"megatron_config", "Megatron-parallel LoRA layers"},
      {"monteclora_config", "MonteCLoRA"},
      {"target_parameters", "LoRA on raw parameters (ParamWrapper)"},
      {"trainable_token_indices", "trainable tokens (new embedding rows)"},
      {"use_bdlora", "BD-LoRA"},
      {"use_qalora", "QALoRA"},
      {"velora_config", "VeLoRA"}};
  // Keys PEFT writes that do not change the math here: metadata, settings of inits that
  // init_lora_weights itself refuses (loftq, eva, corda, lora_ga), qalora_group_size (use_qalora is
  // checked), runtime_config (GPU offload during init).
  static const std::set<std::string> ignored = {
      "peft_type", "revision", "auto_mapping", "megatron_core", "loftq_config", "runtime_config", "qalora_group_size",
      "peft_version", "eva_config", "corda_config", "lora_ga_config"};
  std::vector<std::string> unknown;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    if (k == "r") c.r = get_typed<int64_t>(v, "r", "an integer", &nlohmann::json::is_number_integer);
    else if (k == "lora_alpha") c.lora_alpha = get_typed<double>(v, "lora_alpha", "a number", &nlohmann::json::is_number);
    else if (k == "lora_dropout") c.lora_dropout = get_typed<double>(v, "lora_dropout", "a number", &nlohmann::json::is_number);
    else if (k == "bias") c.bias = get_typed<std::string>(v, "bias", "a string", &nlohmann::json::is_string);
    else if (k == "target_modules") c.target_modules = ModuleSelector::from_json(v, "target_modules");
    else if (k == "exclude_modules") c.exclude_modules = ModuleSelector::from_json(v, "exclude_modules");
    else if (k == "modules_to_save") {
      if (!v.is_null()) {
        PEFT_CHECK(v.is_array(), "adapter_config.json: 'modules_to_save' must be null or a list of strings, got ", v.dump());
        std::vector<std::string> m;
        for (const auto& e : v) {
          PEFT_CHECK(e.is_string(), "adapter_config.json: 'modules_to_save' must hold strings, got ", e.dump());
          m.push_back(e.get<std::string>());
        }
        c.modules_to_save = m;
      }
    } else if (k == "init_lora_weights") {
      parse_init_lora_weights(v, c.init_lora_weights, c.pissa_niter);
    } else if (k == "use_rslora") c.use_rslora = get_typed<bool>(v, "use_rslora", "a boolean", &nlohmann::json::is_boolean);
    else if (k == "use_dora") c.use_dora = get_typed<bool>(v, "use_dora", "a boolean", &nlohmann::json::is_boolean);
    else if (k == "lora_bias") c.lora_bias = get_typed<bool>(v, "lora_bias", "a boolean", &nlohmann::json::is_boolean);
    else if (k == "fan_in_fan_out") c.fan_in_fan_out = get_typed<bool>(v, "fan_in_fan_out", "a boolean", &nlohmann::json::is_boolean);
    else if (k == "inference_mode") c.inference_mode = get_typed<bool>(v, "inference_mode", "a boolean", &nlohmann::json::is_boolean);
    else if (k == "rank_pattern" || k == "alpha_pattern") {
      PEFT_CHECK(v.is_object(), "adapter_config.json: '", k, "' must be an object, got ", v.dump());
      for (auto p = v.begin(); p != v.end(); ++p) {
        if (k == "rank_pattern")
          c.rank_pattern.emplace_back(p.key(), get_typed<int64_t>(p.value(), "rank_pattern", "an object of integers",
                                                                  &nlohmann::json::is_number_integer));
        else
          c.alpha_pattern.emplace_back(p.key(), get_typed<double>(p.value(), "alpha_pattern", "an object of numbers",
                                                                  &nlohmann::json::is_number));
      }
    } else if (k == "layers_to_transform") {
      if (v.is_number_integer()) c.layers_to_transform = std::vector<int64_t>{v.get<int64_t>()};
      else if (!v.is_null()) {
        PEFT_CHECK(v.is_array(), "adapter_config.json: 'layers_to_transform' must be null, an integer or a list, got ", v.dump());
        std::vector<int64_t> l;
        for (const auto& e : v) l.push_back(get_typed<int64_t>(e, "layers_to_transform", "integers", &nlohmann::json::is_number_integer));
        c.layers_to_transform = l;
      }
    } else if (k == "layers_pattern") {
      if (v.is_string()) c.layers_pattern = std::vector<std::string>{v.get<std::string>()};
      else if (!v.is_null()) {
        PEFT_CHECK(v.is_array(), "adapter_config.json: 'layers_pattern' must be null, a string or a list, got ", v.dump());
        std::vector<std::string> l;
        for (const auto& e : v) l.push_back(get_typed<std::string>(e, "layers_pattern", "strings", &nlohmann::json::is_string));
        c.layers_pattern = l;
      }
    } else if (k == "base_model_name_or_path") {
      if (!v.is_null()) c.base_model_name_or_path = get_typed<std::string>(v, k.c_str(), "a string", &nlohmann::json::is_string);
    } else if (k == "task_type") {
      if (!v.is_null()) c.task_type = get_typed<std::string>(v, k.c_str(), "a string", &nlohmann::json::is_string);
    } else if (auto u = unsupported.find(k); u != unsupported.end()) {
      const bool is_default = v.is_null() || (v.is_boolean() && !v.get<bool>()) || ((v.is_array() || v.is_object()) && v.empty());
      PEFT_CHECK(is_default, "adapter_config.json: '", k, "' = ", v.dump(), " is not supported (", u->second,
                 " is not implemented in peft.cpp; loading would compute something other than PEFT)");
    } else if (!ignored.count(k)) {
      unknown.push_back(k);
    }
  }
  if (!unknown.empty() && warnings) {
    std::sort(unknown.begin(), unknown.end());
    std::string list;
    for (const auto& k : unknown) list += (list.empty() ? "'" : ", '") + k + "'";
    warnings->push_back("Unexpected keyword arguments [" + list + "] for class LoraConfig, these are ignored. This "
                        "probably means that you're loading a configuration file that was saved using a higher version "
                        "of the library and additional parameters have been introduced since. It is highly recommended "
                        "to upgrade the PEFT version before continuing (e.g. by running `pip install -U peft`).");
  }
  c.validate();
  return c;
}

void LoraConfig::save(const std::string& dir) const {
  io::write_file_atomic(dir + "/adapter_config.json", to_json().dump(2), "LoraConfig::save");
}

LoraConfig LoraConfig::from_pretrained(const std::string& dir, std::vector<std::string>* warnings) {
  const std::string path = dir + "/adapter_config.json";
  std::ifstream f(path);
  PEFT_CHECK(f.good(), "Can't find 'adapter_config.json' at '", dir, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    PEFT_ERROR("adapter_config.json at '", dir, "' is not valid JSON: ", e.what());
  }
  return from_json(j, warnings);
}

}  // namespace peft
