// PeftModel: what get_peft_model returns. Its children are "base_model" (a LoraModel) whose
// child "model" is the user's model, so parameter names read "base_model.model.seq.0..." as
// in PEFT. Saving and loading write and read PEFT's files and keys exactly.
#pragma once
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "adapters/lora_model.h"
#include "adapters/model_status.h"
#include "adapters/weighted_adapter.h"

namespace peft {

class PeftModel;

// save_pretrained's keyword arguments beyond the adapter list.
struct SaveOptions {
  // PEFT's path_initial_model_for_weight_conversion: the folder a PiSSA / OLoRA adapter was saved
  // to right after get_peft_model, before training. Each adapter is then saved as a plain LoRA
  // adapter for the ORIGINAL base model (trained minus initial: A' = [A; A0], B' = [B, -B0], so
  // its delta is scaling·(B·A - B0·A0)), with the config PEFT writes: init_lora_weights true, r,
  // rank_pattern and alpha_pattern doubled, lora_alpha doubled (×√2 with use_rslora). As PEFT, the
  // initial folder's adapter_config.json is rewritten with init_lora_weights true, so that folder
  // loads as a plain LoRA adapter too. use_rslora with rank / alpha patterns is refused (PEFT).
  std::optional<std::string> path_initial_model_for_weight_conversion;
};

// Inside its scope every adapter is off and the model computes its base output
// (PEFT's `with model.disable_adapter():`).
class DisableAdapterGuard {
 public:
  explicit DisableAdapterGuard(PeftModel& m);
  ~DisableAdapterGuard();
  DisableAdapterGuard(const DisableAdapterGuard&) = delete;
  DisableAdapterGuard& operator=(const DisableAdapterGuard&) = delete;

 private:
  PeftModel& model_;
};

class PeftModel : public nn::Module {
 public:
  // autocast_adapter_dtype (PEFT's default true): adapters created on a BF16 / F16 base are cast
  // to F32 (LoraModel::cast_adapter_dtype); lora.Linear then mixes dtypes as PEFT does.
  PeftModel(nn::ModulePtr model, const LoraConfig& config, const std::string& adapter_name = "default",
            bool autocast_adapter_dtype = true);
  std::string type_name() const override { return "PeftModel"; }
  Tensor forward(const Tensor& x) override { return base_model()->forward(x); }
  // PEFT's mixed-batch inference, `model(x, adapter_names=[...])`: row i of x (its first dim) runs
  // adapter adapter_names[i], "__base__" the base model (adapters/mixed_batch.h). Eval mode only
  // ("Cannot pass `adapter_names` when the model is in training mode."); every name must be an
  // adapter of some LoRA layer ("Trying to infer with non-existing adapter(s): b, c"). Each layer
  // then checks the length, refuses merged and DoRA adapters, and computes base + its rows' branch.
  Tensor forward(const Tensor& x, const std::vector<std::string>& adapter_names);

  std::shared_ptr<LoraModel> base_model() const;
  // The adapted user model (PEFT's base_model.model).
  nn::ModulePtr model() const { return base_model()->model(); }
  const std::map<std::string, LoraConfig>& peft_config() const { return base_model()->peft_config(); }

  // (trainable, all); shared parameters count once.
  std::pair<int64_t, int64_t> get_nb_trainable_parameters() const;
  // "trainable params: 52,162 || all params: 4,100,164 || trainable%: 1.2722"
  void print_trainable_parameters(std::ostream& os) const;
  void print_trainable_parameters() const;
  std::vector<Tensor> trainable_parameters() const;
  const std::vector<std::string>& targeted_module_names() const { return base_model()->targeted_module_names(); }

  void add_adapter(const std::string& name, const LoraConfig& config, bool autocast_adapter_dtype = true);
  void set_adapter(const std::string& name) { set_adapter(std::vector<std::string>{name}); }
  void set_adapter(const std::vector<std::string>& names);
  const std::vector<std::string>& active_adapters() const { return base_model()->active_adapters(); }
  const std::string& active_adapter() const { return active_adapters().front(); }
  [[nodiscard]] std::unique_ptr<DisableAdapterGuard> disable_adapter() { return std::make_unique<DisableAdapterGuard>(*this); }
  void delete_adapter(const std::string& name) { base_model()->delete_adapter(name); }
  void merge_adapter(bool safe_merge = false, const std::vector<std::string>& names = {}) {
    base_model()->merge_adapter(safe_merge, names);
  }
  void unmerge_adapter() { base_model()->unmerge_adapter(); }
  // The user's model with merged weights and no adapter layers; this PeftModel is spent.
  // adapter_names: merge those adapters (default: the active ones); unknown names are refused
  // before anything changes (PEFT skips them). modules_to_save: the active adapter's copy stays.
  nn::ModulePtr merge_and_unload(bool safe_merge = false, const std::vector<std::string>& adapter_names = {}) {
    return base_model()->unload_impl(true, safe_merge, adapter_names);
  }
  // The user's model without adapter layers: base weights as they are (unmerged adapters are
  // dropped), but, as PEFT, each modules_to_save module is its active adapter's trained copy.
  nn::ModulePtr unload() { return base_model()->unload_impl(false, false); }

  // PEFT's enable_adapter_layers / disable_adapter_layers: unlike disable_adapter(), these also
  // freeze (disable) or re-enable (enable: active adapters only) the adapters' requires_grad.
  void enable_adapter_layers() { base_model()->enable_adapter_layers(); }
  void disable_adapter_layers() { base_model()->disable_adapter_layers(); }
  // PEFT's set_requires_grad: the named adapters' tensors (and modules_to_save copies) only.
  void set_requires_grad(const std::vector<std::string>& adapter_names, bool requires_grad = true) {
    base_model()->set_requires_grad(adapter_names, requires_grad);
  }
  // PEFT's get_layer_status / get_model_status (adapters/model_status.h).
  std::vector<TunerLayerStatus> get_layer_status() { return peft::get_layer_status(*this); }
  TunerModelStatus get_model_status() { return peft::get_model_status(*this); }

  // A new adapter combined from existing ones (see WeightedAdapterOptions for the types); frozen, not active.
  void add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                            const std::string& adapter_name, const std::string& combination_type = "svd",
                            std::optional<int64_t> svd_rank = std::nullopt) {
    peft::add_weighted_adapter(*base_model(), adapters, weights, adapter_name, combination_type, svd_rank);
  }
  // Every combination type and option of PEFT's add_weighted_adapter (adapters/weighted_adapter.h).
  void add_weighted_adapter(const std::vector<std::string>& adapters, const std::vector<double>& weights,
                            const std::string& adapter_name, const WeightedAdapterOptions& options) {
    peft::add_weighted_adapter(*base_model(), adapters, weights, adapter_name, options);
  }

  // ---- PEFT-compatible files
  // dir/adapter_model.safetensors + dir/adapter_config.json for "default"; other adapters in
  // dir/<name>/. `adapters` empty: all.
  void save_pretrained(const std::string& dir, const std::vector<std::string>& adapters = {}) const;
  // The same with PEFT's further keyword arguments (SaveOptions).
  void save_pretrained(const std::string& dir, const std::vector<std::string>& adapters,
                       const SaveOptions& options) const;
  // Adds adapter `name` from a directory PEFT wrote; frozen unless is_trainable. Missing keys
  // warn (through `warnings`, else stderr); a shape mismatch throws naming key and shapes and
  // leaves the model as it was. BF16 / F16 adapter tensors are cast to F32 before loading (PEFT's
  // autocast_adapter_dtype default).
  void load_adapter(const std::string& dir, const std::string& name, bool is_trainable = false,
                    std::vector<std::string>* warnings = nullptr);
  static std::shared_ptr<PeftModel> from_pretrained(nn::ModulePtr model, const std::string& dir,
                                                    std::optional<LoraConfig> config = std::nullopt,
                                                    const std::string& adapter_name = "default",
                                                    bool is_trainable = false,
                                                    std::vector<std::string>* warnings = nullptr);
};

// get_peft_model(model, config): wraps and adapts `model` for adapter "default".
std::shared_ptr<PeftModel> get_peft_model(nn::ModulePtr model, const LoraConfig& config,
                                          const std::string& adapter_name = "default",
                                          bool autocast_adapter_dtype = true);

// The adapter's state dict with PEFT's keys (adapter name removed), relative to `model`;
// `prefix` ("base_model.model." for a PeftModel) is prepended.
NamedTensors get_peft_model_state_dict(nn::Module& model, const LoraConfig& config, const std::string& adapter_name,
                                       const std::string& prefix);
struct AdapterLoadResult {
  std::vector<std::string> missing_keys;     // this adapter's tensors the file lacked (model names)
  std::vector<std::string> unexpected_keys;  // file keys that belong to no tensor of the model
};
// Loads PEFT keys (with or without the prefix) into adapter `adapter_name` of `model`. Every
// shape is checked before anything is copied, so an error leaves the model as it was.
AdapterLoadResult set_peft_model_state_dict(nn::Module& model, const NamedTensors& state,
                                            const std::string& adapter_name);

}  // namespace peft
