// PEFT's data-driven LoRA initialisations (init_lora_weights "pissa", "pissa_niter_N", "olora",
// "orthogonal"), the adapter_config.json spelling of every init, and the conversion a PiSSA / OLoRA
// adapter needs before it can be used on the unmodified base model (PEFT's save_pretrained with
// path_initial_model_for_weight_conversion, LoraModel.subtract_mutated_init).
//
// PiSSA and OLoRA move part of the base weight into the adapter: W_res = W - scaling·B·A, so the
// model computes the same output at initialisation. Only lora.Linear supports them, as in PEFT;
// an Embedding treats them as `true` and a Conv2d refuses them (PEFT's own behaviour).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapters/lora_config.h"
#include "core/tensor.h"

namespace peft {

// ---- spelling

// init_lora_weights as adapter_config.json holds it: true / false / "gaussian" / "pissa" /
// "pissa_niter_4" / "olora" / "orthogonal".
nlohmann::json init_lora_weights_json(LoraInit init, int64_t pissa_niter);
// The reverse. loftq / eva / corda / lora_ga / mica are refused by name (not implemented here);
// a malformed "pissa_..." gets PEFT's message, any other string PEFT's "Unknown initialization".
void parse_init_lora_weights(const nlohmann::json& v, LoraInit& init, int64_t& pissa_niter);
// PEFT's text for a string init in messages ("pissa_niter_4", "olora").
std::string init_lora_weights_name(LoraInit init, int64_t pissa_niter);

// True for the inits that rewrite the base weight (PiSSA, OLoRA).
bool init_mutates_base_weight(LoraInit init);

// ---- lora.Linear

// What an init produces for one lora.Linear: A (r, in), B (out, r) in the base weight's dtype and,
// for PiSSA / OLoRA, the residual base weight W - scaling·B·A (an undefined Tensor otherwise).
struct LinearInit {
  Tensor A, B, residual;
};
// For the data-driven inits (pissa*, olora, orthogonal): computes them from the base weight W
// (out, in) and the layer's settings, changing nothing. Throws PEFT's errors (an F64 base for
// PiSSA / OLoRA, an odd rank for "orthogonal") and refuses r > min(out, in) for PiSSA / OLoRA
// (PEFT silently makes a smaller adapter there, which its own config then misdescribes).
LinearInit lora_linear_init(const Tensor& W, const LoraLayerSettings& s);

// Writes `value` into the base weight `w` in place. While a BaseWeightGuard is alive the old
// value is kept, so that an injection that fails afterwards can put every base weight back.
void overwrite_base_weight(Tensor& w, const Tensor& value);

// Scope of one injection: unless commit() is called, the destructor restores every base weight
// overwritten by overwrite_base_weight inside it (DESIGN.md: bad input leaves the model as it was).
class BaseWeightGuard {
 public:
  BaseWeightGuard();
  ~BaseWeightGuard();
  BaseWeightGuard(const BaseWeightGuard&) = delete;
  BaseWeightGuard& operator=(const BaseWeightGuard&) = delete;
  void commit();

 private:
  std::vector<std::pair<Tensor, Tensor>> saved_;  // (the weight, its old value)
  BaseWeightGuard* outer_;
  bool committed_ = false;
  friend void overwrite_base_weight(Tensor&, const Tensor&);
};

// PEFT's reset_lora_parameters for layers without data-driven inits (Conv2d): any init other than
// true / false / "gaussian" is refused with PEFT's "Unknown initialization init_lora_weights='…'".
void check_init_for_conv(const LoraLayerSettings& s);

// ---- conversion to plain LoRA (PEFT's subtract_mutated_init)

// The trained adapter `trained` (PEFT keys) minus the initial one `initial` (the same keys, saved
// right after get_peft_model): every "lora_A" key becomes [A; A0] (rows), every "lora_B" key
// [B, -B0] (columns), so scaling·B'·A' = scaling·(B·A - B0·A0) at rank 2r; other keys are kept.
// Every key and shape is checked before anything is built.
NamedTensors subtract_mutated_init(const NamedTensors& trained, const NamedTensors& initial);
// The config PEFT writes beside it: init_lora_weights true, r and rank_pattern doubled,
// lora_alpha doubled (times √2 with use_rslora: the scaling is kept), alpha_pattern doubled.
// Refuses use_rslora with rank_pattern / alpha_pattern (PEFT's ValueError).
LoraConfig converted_lora_config(const LoraConfig& c);

}  // namespace peft
