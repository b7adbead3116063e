// layers/hf/opt.h — transformers' OPT (model_type "opt"), including OPT-350m's quirks:
// word_embed_proj_dim != hidden_size (project_in / project_out around the decoder) and
// do_layer_norm_before = false (post-LN layers, no final layer norm). Learned positions with
// transformers' offset of 2, computed from the attention mask (padding does not advance them).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "layers/hf/causal_lm.h"

namespace peft::nn::hf {

struct OptDims {
  int64_t hidden = 0, ffn = 0, layers = 0, heads = 0, vocab = 0, max_positions = 0, word_dim = 0;
  bool pre_ln = true, final_ln = true, ln_affine = true, bias = true, tie = true;
  double dropout = 0.1, layerdrop = 0;
  std::optional<int64_t> pad_token_id;
  std::string act = "relu";
  static OptDims from(const HfConfig& c);
};

class OPTAttention : public Module {
 public:
  PEFT_MODULE_CLONE(OPTAttention)
  explicit OPTAttention(const OptDims& d);
  std::string type_name() const override { return "OPTAttention"; }
  // k_cache / v_cache (optional): the layer's earlier keys / values, extended in place.
  Tensor attend(const Tensor& x, const Tensor& mask, Tensor* k_cache = nullptr, Tensor* v_cache = nullptr);

 private:
  int64_t heads_, head_dim_;
};

class OPTDecoderLayer : public Module {
 public:
  PEFT_MODULE_CLONE(OPTDecoderLayer)
  explicit OPTDecoderLayer(const OptDims& d);
  std::string type_name() const override { return "OPTDecoderLayer"; }
  Tensor run(const Tensor& x, const Tensor& mask, Tensor* k_cache = nullptr, Tensor* v_cache = nullptr);

 private:
  bool pre_ln_;
  double dropout_;
};

class OPTDecoder : public Module {
 public:
  PEFT_MODULE_CLONE(OPTDecoder)
  explicit OPTDecoder(const OptDims& d);
  std::string type_name() const override { return "OPTDecoder"; }
  // position_ids (B, T) undefined: from the mask as transformers' OPT (cumsum(mask)·mask − 1);
  // cache: see CausalLM::logits_step.
  Tensor hidden_states(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids = Tensor(),
                       KvCache* cache = nullptr);

 private:
  double layerdrop_;
};

// OPTModel: holds the decoder as "decoder" (names read model.decoder.layers.0...).
class OPTModel : public Module {
 public:
  PEFT_MODULE_CLONE(OPTModel)
  explicit OPTModel(const OptDims& d);
  std::string type_name() const override { return "OPTModel"; }
};

class OPTForCausalLM : public CausalLM {
 public:
  PEFT_MODULE_CLONE(OPTForCausalLM)
  explicit OPTForCausalLM(const HfConfig& config);
  std::string type_name() const override { return "OPTForCausalLM"; }
  std::vector<std::pair<std::string, std::string>> tied_weights() const override;
  const OptDims& dims() const { return dims_; }

 private:
  Tensor run_tokens(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                    KvCache* cache) override;
  OptDims dims_;
};

}  // namespace peft::nn::hf
