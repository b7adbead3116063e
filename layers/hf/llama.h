// layers/hf/llama.h — transformers' Llama family as one implementation: "llama", "mistral"
// (sliding_window) and "qwen2" (q/k/v biases), with grouped-query attention, RMSNorm, rotary
// embeddings (default / linear / llama3 scaling) and the SwiGLU MLP; module and parameter names
// are transformers' (model.layers.0.self_attn.q_proj.weight, ...), class names carry the model's
// prefix (LlamaDecoderLayer, Qwen2Attention, ...).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layers/hf/causal_lm.h"

namespace peft::nn::hf {

// An activation as transformers' ACT2FN builds it (SiLU, ReLU, GELUActivation, ...): no
// parameters, but a named child as in the Python module tree.
class Activation : public Module {
 public:
  PEFT_MODULE_CLONE(Activation)
  explicit Activation(std::string name);
  std::string type_name() const override;
  Tensor forward(const Tensor& x) override { return hf_activation(name_, x); }

 private:
  std::string name_;
};

// The sizes every Llama-family module needs, read once from config.json.
struct LlamaDims {
  std::string prefix;  // "Llama", "Mistral", "Qwen2"
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  double eps = 1e-6;
  bool qkv_bias = false, o_bias = false, mlp_bias = false, tie = false;
  std::optional<int64_t> sliding_window, pad_token_id;
  std::string act = "silu";
  static LlamaDims from(const HfConfig& c);
};

class LlamaAttention : public Module {
 public:
  PEFT_MODULE_CLONE(LlamaAttention)
  explicit LlamaAttention(const LlamaDims& d);
  std::string type_name() const override { return prefix_ + "Attention"; }
  // x (B, T, hidden); cos, sin (B or 1, T, head_dim); mask from decoder_attention_mask (or undefined:
  // causal). k_cache / v_cache (optional): the layer's earlier keys / values, extended in place.
  Tensor attend(const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& mask, Tensor* k_cache = nullptr,
                Tensor* v_cache = nullptr);

 private:
  std::string prefix_;
  int64_t heads_, kv_heads_, head_dim_;
};

class LlamaMLP : public Module {
 public:
  PEFT_MODULE_CLONE(LlamaMLP)
  explicit LlamaMLP(const LlamaDims& d);
  std::string type_name() const override { return prefix_ + "MLP"; }
  // down_proj(act(gate_proj(x)) * up_proj(x))
  Tensor forward(const Tensor& x) override;

 private:
  std::string prefix_;
};

class LlamaDecoderLayer : public Module {
 public:
  PEFT_MODULE_CLONE(LlamaDecoderLayer)
  explicit LlamaDecoderLayer(const LlamaDims& d);
  std::string type_name() const override { return prefix_ + "DecoderLayer"; }
  Tensor run(const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& mask, Tensor* k_cache = nullptr,
             Tensor* v_cache = nullptr);

 private:
  std::string prefix_;
};

// Holds inv_freq (not a parameter or buffer: transformers' is non-persistent).
class LlamaRotaryEmbedding : public Module {
 public:
  PEFT_MODULE_CLONE(LlamaRotaryEmbedding)
  LlamaRotaryEmbedding(const HfConfig& c, const LlamaDims& d) : prefix_(d.prefix), inv_freq_(rope_inv_freq(c, d.head_dim)) {}
  std::string type_name() const override { return prefix_ + "RotaryEmbedding"; }
  const std::vector<double>& inv_freq() const { return inv_freq_; }

 private:
  std::string prefix_;
  std::vector<double> inv_freq_;
};

class LlamaModel : public Module {
 public:
  PEFT_MODULE_CLONE(LlamaModel)
  LlamaModel(const HfConfig& c, const LlamaDims& d);
  std::string type_name() const override { return prefix_ + "Model"; }
  // Last hidden states (B, T, hidden) after the final norm. position_ids (B, T) undefined: 0..T-1
  // (transformers' model() call); cache: see CausalLM::logits_step (attention_mask then covers
  // the cached tokens too).
  Tensor hidden_states(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids = Tensor(),
                       KvCache* cache = nullptr);

 private:
  std::string prefix_;
  std::optional<int64_t> sliding_window_;
};

class LlamaForCausalLM : public CausalLM {
 public:
  PEFT_MODULE_CLONE(LlamaForCausalLM)
  // config.json's model_type must be "llama", "mistral" or "qwen2". Weights: PyTorch's default
  // layer init; call init_weights() for transformers' or load a checkpoint (hf::from_pretrained).
  explicit LlamaForCausalLM(const HfConfig& config);
  std::string type_name() const override { return dims_.prefix + "ForCausalLM"; }
  std::vector<std::pair<std::string, std::string>> tied_weights() const override;
  const LlamaDims& dims() const { return dims_; }

 private:
  Tensor run_tokens(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                    KvCache* cache) override;
  LlamaDims dims_;
};

}  // namespace peft::nn::hf
