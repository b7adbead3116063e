// LoraConfig: every field of PEFT's LoraConfig that this engine implements, PEFT's
// validation messages, and adapter_config.json read/write. Custom LoRA layers are
// registered on a config (PEFT's config._register_custom_module) and are not saved.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>
#include <vector>

#include <nlohmann/json.hpp>

#include "layers/module.h"

namespace peft {

class LoraLayer;
struct LoraConfig;

// A regular expression matched against whole dotted module names (Python's re.fullmatch).
struct Regex {
  std::string pattern;
};

// PEFT's INCLUDE_LINEAR_LAYERS_SHORTHAND. As target_modules (a string, any case) it stands for every
// Linear of the model but its output layer; get_peft_model replaces it with those names.
inline constexpr const char* kAllLinear = "all-linear";

// target_modules / exclude_modules: unset, a list of names, or one regex string.
class ModuleSelector {
 public:
  ModuleSelector() = default;
  ModuleSelector(std::initializer_list<std::string> names) : names_(std::vector<std::string>(names)) {}
  ModuleSelector(std::vector<std::string> names) : names_(std::move(names)) {}  // NOLINT: implicit on purpose
  ModuleSelector(Regex re) : regex_(std::move(re.pattern)) {}                     // NOLINT
  bool is_set() const { return names_.has_value() || regex_.has_value(); }
  bool is_regex() const { return regex_.has_value(); }
  // The string "all-linear" in any case: PEFT tests target_modules.lower() == "all-linear", so it is
  // a string (a regex here) until resolved, and the string rules (no layers_to_transform) apply.
  bool is_all_linear() const;
  static ModuleSelector all_linear() { return Regex{kAllLinear}; }
  const std::vector<std::string>& names() const;  // list form (throws if regex/unset)
  const std::string& regex() const;               // regex form
  // PEFT-style text for messages: {'seq.0', 'seq.2'} or the regex string.
  std::string describe() const;
  nlohmann::json to_json() const;  // null, sorted list, or string
  static ModuleSelector from_json(const nlohmann::json& j, const char* field);

 private:
  std::optional<std::vector<std::string>> names_;
  std::optional<std::string> regex_;
};

// How lora_A (and lora_B) start: PEFT's init_lora_weights = True / "gaussian" / False, and the
// data-driven inits of lora.Linear (adapters/lora_init.h): "pissa", "pissa_niter_N" (N in
// pissa_niter), "olora" (these two rewrite the base weight), "orthogonal".
enum class LoraInit { Default, Gaussian, Random, Pissa, PissaNiter, Olora, Orthogonal };

// Per-adapter settings resolved for one layer (rank/alpha patterns applied).
struct LoraLayerSettings {
  int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0;
  LoraInit init = LoraInit::Default;
  int64_t pissa_niter = 0;  // subspace iterations of "pissa_niter_N"
  bool use_rslora = false, use_dora = false, lora_bias = false;
  double scaling() const;
};

// The unqualified C++ class name of a type ("LSTM" for peft::nn::LSTM).
std::string short_type_name(const std::type_info& t);

// One entry of the type → LoRA-layer dispatch table.
struct LoraDispatchEntry {
  std::string base_type;                                      // e.g. "Linear", "LSTM"
  std::function<bool(const nn::Module&)> matches;             // isinstance semantics
  // Wraps `base` for adapter `adapter_name`.
  std::function<std::shared_ptr<LoraLayer>(nn::ModulePtr base, const std::string& adapter_name,
                                           const LoraLayerSettings& settings)> create;
};

// The Hugging Face PEFT release whose adapter file format (keys, config fields) is reproduced.
inline constexpr const char* kPeftFormatVersion = "0.21.2";

struct LoraConfig {
  int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0.0;
  std::string bias = "none";  // "none" | "all" | "lora_only"
  ModuleSelector target_modules;  // names, Regex{...}, or ModuleSelector::all_linear() ("all-linear")
  ModuleSelector exclude_modules;
  std::optional<std::vector<std::string>> modules_to_save;
  LoraInit init_lora_weights = LoraInit::Default;
  int64_t pissa_niter = 0;  // N of init_lora_weights "pissa_niter_N" (LoraInit::PissaNiter)
  bool use_rslora = false;
  // Key → value in the order given; the first key matching a module name wins.
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  std::optional<std::vector<int64_t>> layers_to_transform;
  std::optional<std::vector<std::string>> layers_pattern;
  bool use_dora = false;
  bool lora_bias = false;
  bool fan_in_fan_out = false;
  bool inference_mode = false;
  std::optional<std::string> base_model_name_or_path;
  std::optional<std::string> task_type;
  // PEFT's auto_mapping for custom models: {"base_model_class": ..., "parent_library": ...}; set by save_pretrained.
  std::optional<std::pair<std::string, std::string>> auto_mapping;

  // Throws peft::Error with PEFT's message for invalid combinations.
  void validate() const;
  // r / alpha for one module name after rank_pattern / alpha_pattern.
  LoraLayerSettings settings_for(const std::string& module_name) const;

  // Registers a user LoRA layer for base type Base (and its subclasses). LoraT must be
  // constructible as LoraT(std::shared_ptr<Base> base, const std::string& adapter_name,
  // const LoraLayerSettings&). Consulted before the built-ins, in registration order.
  // Device contract: the adapter's tensors are named "lora_*.<adapter>[...]"; after update_layer
  // the injection pass moves them to the base layer's device (LoraLayer::move_adapter_to_base_device),
  // so a layer may create them on the CPU; one whose update_layer computes with the base layer's
  // tensors creates them on LoraLayer::base_device() (samples/custom_lstm does).
  template <class Base, class LoraT>
  void register_custom_module(const std::string& base_type_name = "");
  const std::vector<LoraDispatchEntry>& custom_modules() const { return custom_modules_; }

  // adapter_config.json as PEFT writes it.
  nlohmann::json to_json() const;
  // Unknown keys are reported through `warnings` (and otherwise ignored); wrong types throw.
  static LoraConfig from_json(const nlohmann::json& j, std::vector<std::string>* warnings = nullptr);
  void save(const std::string& dir) const;  // dir/adapter_config.json, atomically
  static LoraConfig from_pretrained(const std::string& dir, std::vector<std::string>* warnings = nullptr);

 private:
  std::vector<LoraDispatchEntry> custom_modules_;
};

template <class Base, class LoraT>
void LoraConfig::register_custom_module(const std::string& base_type_name) {
  LoraDispatchEntry e;
  e.base_type = base_type_name.empty() ? short_type_name(typeid(Base)) : base_type_name;
  e.matches = [](const nn::Module& m) { return dynamic_cast<const Base*>(&m) != nullptr; };
  e.create = [](nn::ModulePtr base, const std::string& name, const LoraLayerSettings& s) -> std::shared_ptr<LoraLayer> {
    return std::make_shared<LoraT>(std::dynamic_pointer_cast<Base>(base), name, s);
  };
  for (const auto& existing : custom_modules_)
    PEFT_CHECK(existing.base_type != e.base_type, "register_custom_module: a LoRA layer for '", e.base_type,
               "' is already registered on this config");
  custom_modules_.push_back(std::move(e));
}

}  // namespace peft
