// What PEFT's get_layer_status / get_model_status report about a model's adapter layers (LoRA
// layers and modules_to_save wrappers), and the model-wide switches whose effect they report:
// enable / disable_adapter_layers and set_requires_grad. Mixed states are reported, never
// repaired: a model whose layers disagree shows PEFT's "irregular" marker, which is how a user
// finds a half-applied set_adapter or a hand-frozen tensor.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "layers/module.h"

namespace peft {

class LoraModel;

// A flag over several parameters or layers: all on, all off, or a mix (PEFT's "irregular").
enum class Uniform { False, True, Irregular };

struct TunerLayerStatus {
  std::string name;         // dotted, relative to the PeftModel's base_model ("model.lin0"), as PEFT
  std::string module_type;  // "lora.Linear", "ModulesToSaveWrapper", ...
  bool enabled = true;
  std::vector<std::string> active_adapters;
  std::vector<std::string> merged_adapters;          // in merge order
  std::map<std::string, Uniform> requires_grad;      // adapter → its trainable tensors' flags
  std::vector<std::string> available_adapters;       // sorted
  std::map<std::string, std::vector<std::string>> devices;  // adapter → sorted device types ("cpu", "cuda")
  // PEFT's dataclasses.asdict(status): "irregular" as a string, quantization_backend null.
  nlohmann::json to_json() const;
};

struct TunerModelStatus {
  std::string base_model_type;     // the user's model type; "other" for a model that is not a PeftModel
  std::string adapter_model_type;  // "LoraModel"; "None" for a model that is not a PeftModel
  std::map<std::string, std::string> peft_types;  // adapter → "LORA"
  int64_t trainable_params = 0, total_params = 0, num_adapter_layers = 0;
  Uniform enabled = Uniform::True;
  std::optional<std::vector<std::string>> active_adapters;  // nullopt: layers disagree ("irregular")
  std::optional<std::vector<std::string>> merged_adapters;  // sorted; nullopt: merged on some layers only
  std::map<std::string, Uniform> requires_grad;
  std::vector<std::string> available_adapters;
  std::map<std::string, std::vector<std::string>> devices;
  nlohmann::json to_json() const;
};

// Every adapter layer of `model` in named_modules() order. A PeftModel is walked from its
// base_model (names "model.<...>"), any other module from itself (e.g. after
// inject_adapter_in_model). No adapter layer: PEFT's "No adapter layers found in the model" error.
std::vector<TunerLayerStatus> get_layer_status(nn::Module& model);
// The layers' statuses combined as PEFT combines them; counts are get_nb_trainable_parameters'.
TunerModelStatus get_model_status(nn::Module& model);

// PEFT's BaseTuner.enable_adapter_layers / disable_adapter_layers: besides the flag, disabling
// freezes every adapter tensor and modules_to_save copy; enabling makes each layer's active
// adapters trainable again (and the others frozen), as PEFT's set_adapter does. Disabling with an
// active adapter whose bias is not "none" warns (the output then is not the base model's).
void set_adapter_layers_enabled(LoraModel& model, bool enabled);
// PEFT's set_requires_grad: the tensors of the named adapters (LoRA weights and modules_to_save
// copies) in every layer under `root` get `requires_grad`; nothing else changes. Names are not
// checked here (PEFT skips layers without them); PeftModel::set_requires_grad checks them.
void set_requires_grad(nn::Module& root, const std::vector<std::string>& adapter_names, bool requires_grad);

}  // namespace peft
