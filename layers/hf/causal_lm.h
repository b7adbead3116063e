// layers/hf/causal_lm.h — what every transformers decoder model here shares: the config it was
// built from, logits for token ids with an optional padding mask, the tied-weight table, and
// the helpers for causal masks and rotary tables.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "layers/hf/pretrained.h"

namespace peft::nn::hf {

// Keys and values of every layer so far, (B, Hkv, T_past, head_dim) each; empty before the first
// step. Filled and extended by CausalLM::logits_step.
struct KvCache {
  std::vector<Tensor> k, v;
  int64_t length() const { return k.empty() || !k.front().defined() ? 0 : k.front().size(2); }
  // Before a step of a `layers`-layer model: sized on first use, else checked to match (`who`
  // names the model in the error).
  void prepare(size_t layers, const std::string& who);
};

// A *ForCausalLM model with transformers' module and parameter names.
class CausalLM : public PretrainedModel {
 public:
  explicit CausalLM(HfConfig config) : PretrainedModel(std::move(config)) {}

  // logits (B, T, V) in the model's dtype for input_ids (B, T) I64. attention_mask (B, T) I64:
  // 1 for tokens, 0 for padding (left padding, as transformers' generate pads); undefined: all
  // tokens. Logits at padded positions are finite but meaningless (their query rows attend to
  // nothing), as in transformers.
  Tensor logits(const Tensor& input_ids, const Tensor& attention_mask = Tensor());
  // One decoding step with a KV cache (generation): logits (B, T_new, V) of input_ids (B, T_new)
  // following cache.length() earlier tokens. attention_mask (B, T_past + T_new) covers every
  // token so far (undefined: no padding); position_ids (B, T_new) I64 as transformers' generate
  // makes them (cumsum(mask) - 1). The new keys / values are appended to `cache`.
  Tensor logits_step(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids, KvCache& cache);
  // Module::forward on token ids: logits without a mask (so LoraModel / PeftModel forward runs it).
  Tensor forward(const Tensor& input_ids) override { return logits(input_ids); }

  // transformers' _init_weights for decoders: every Linear and Embedding weight
  // N(0, initializer_range), biases 0, norm weights 1 (norm biases 0).
  void init_weights() override;

 protected:
  // The model itself, after logits / logits_step checked their inputs: logits of input_ids;
  // position_ids undefined means the model's own rule for a plain call, cache null no cache.
  virtual Tensor run_tokens(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                            KvCache* cache) = 0;

 private:
  // input_ids: I64 (B, T); on the CPU also ids in [0, vocab) (device ids are checked by the
  // embedding's gather kernel, without a copy to the host on every step).
  void check_ids(const Tensor& input_ids) const;
};

// The attention mask of a decoder for SDPA: I64 (B, 1, Tq, Tk), 1 where query i (the token at
// slot Tk - Tq + i, the queries being the last Tq of Tk tokens) may attend key j: j <= that slot,
// key j is not padding (attention_mask (B, Tk), undefined: none), and (sliding_window)
// slot - j < window. Undefined when plain is_causal says the same (Tq == Tk, no padding, no cut).
Tensor decoder_attention_mask(const Tensor& attention_mask, int64_t B, int64_t Tq, int64_t Tk,
                              std::optional<int64_t> sliding_window, Device device);
// Positions of left-padded sequences: cumsum(mask) - 1 at tokens, `pad_position` at padding —
// 0 as transformers 5.25's generate, -1 as OPT's own rule. (B, T) I64 on the CPU. Padded slots
// are masked as keys, so their positions only reach their own (meaningless) outputs.
Tensor positions_from_mask(const Tensor& attention_mask, int64_t pad_position = 0);

// transformers' rotary tables: inv_freq (D/2) from config.json (rope_theta / rope_scaling, or
// transformers 5's rope_parameters; rope types "default", "linear", "llama3"; others refused).
std::vector<double> rope_inv_freq(const HfConfig& config, int64_t head_dim);
// cos, sin (B, T, head_dim) in `dtype` on `device` for position ids (B, T) I64 (computed on the host).
std::pair<Tensor, Tensor> rope_cos_sin(const std::vector<double>& inv_freq, const Tensor& position_ids, DType dtype,
                                       Device device);

// hidden_act / activation_function of a config applied to x ("silu", "relu", "gelu",
// "gelu_new" / "gelu_pytorch_tanh"); others refused naming the value.
Tensor hf_activation(const std::string& name, const Tensor& x);
void check_activation(const HfConfig& config, const std::string& key, const std::string& value);

}  // namespace peft::nn::hf
