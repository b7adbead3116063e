// layers/hf/pretrained.h — what every transformers model here shares, decoder-only or
// encoder-decoder: the config.json it was built from, its model_type (PEFT's key for default
// target modules), the tied-weight table and transformers' weight initialisation.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "layers/hf/config.h"
#include "layers/module.h"

namespace peft::nn::hf {

class PretrainedModel : public Module {
 public:
  explicit PretrainedModel(HfConfig config) : config_(std::move(config)) {}
  const HfConfig& config() const { return config_; }
  // config.json's model_type ("llama", "opt", "t5", ...).
  const std::string& model_type() const { return config_.model_type(); }
  int64_t vocab_size() const { return config_.get_int("vocab_size"); }
  // True for encoder-decoder models (T5ForConditionalGeneration): PEFT's task type SEQ_2_SEQ_LM.
  virtual bool is_encoder_decoder() const { return false; }

  // Parameters that are one tensor under two names, {alias, source} ("lm_head.weight",
  // "model.embed_tokens.weight"): save_pretrained writes the source only, loading accepts a file
  // without the alias.
  virtual std::vector<std::pair<std::string, std::string>> tied_weights() const { return {}; }

  // transformers' _init_weights for the architecture; used for models built from a config alone.
  virtual void init_weights() = 0;

 protected:
  HfConfig config_;
};

}  // namespace peft::nn::hf
