#include "layers/hf/llama.h"

#include <cmath>

#include "core/ops.h"
#include "layers/container.h"
#include "layers/embedding.h"
#include "layers/linear.h"
#include "layers/norm.h"

namespace peft::nn::hf {

Activation::Activation(std::string name) : name_(std::move(name)) {
  PEFT_CHECK(name_ == "silu" || name_ == "swish" || name_ == "relu" || name_ == "gelu" || name_ == "gelu_new" ||
                 name_ == "gelu_pytorch_tanh",
             "activation \"", name_, "\" is not supported (silu, relu, gelu, gelu_new, gelu_pytorch_tanh)");
}

std::string Activation::type_name() const {
  if (name_ == "silu" || name_ == "swish") return "SiLU";
  if (name_ == "relu") return "ReLU";
  if (name_ == "gelu") return "GELUActivation";
  if (name_ == "gelu_new") return "NewGELUActivation";
  return "PytorchGELUTanh";
}

LlamaDims LlamaDims::from(const HfConfig& c) {
  LlamaDims d;
  const std::string& t = c.model_type();
  PEFT_CHECK(t == "llama" || t == "mistral" || t == "qwen2", c.source(), ": model_type \"", t,
             "\" is not a Llama-family model (llama, mistral, qwen2)");
  d.prefix = t == "llama" ? "Llama" : t == "mistral" ? "Mistral" : "Qwen2";
  d.hidden = c.get_int("hidden_size");
  d.intermediate = c.get_int("intermediate_size");
  d.layers = c.get_int("num_hidden_layers");
  d.heads = c.get_int("num_attention_heads");
  d.kv_heads = c.get_int("num_key_value_heads", d.heads);
  d.vocab = c.get_int("vocab_size");
  PEFT_CHECK(d.hidden > 0 && d.intermediate > 0 && d.layers >= 0 && d.heads > 0 && d.kv_heads > 0 && d.vocab > 0,
             c.source(), ": sizes must be positive");
  PEFT_CHECK(d.heads % d.kv_heads == 0, c.source(), ": num_attention_heads ", d.heads,
             " is not a multiple of num_key_value_heads ", d.kv_heads);
  d.head_dim = c.get_int("head_dim", d.hidden / d.heads);
  PEFT_CHECK(d.head_dim > 0 && d.head_dim % 2 == 0, c.source(), ": head_dim ", d.head_dim, " must be even and positive");
  d.eps = c.get_double("rms_norm_eps", 1e-6);
  const bool attention_bias = c.get_bool("attention_bias", false);
  d.qkv_bias = t == "qwen2" ? true : attention_bias;  // Qwen2: biases on q, k, v only
  d.o_bias = t == "qwen2" ? false : attention_bias;
  d.mlp_bias = c.get_bool("mlp_bias", false);
  d.tie = c.get_bool("tie_word_embeddings", false);
  d.act = c.get_string("hidden_act", "silu");
  check_activation(c, "hidden_act", d.act);
  d.pad_token_id = c.get_optional_int("pad_token_id");
  if (d.pad_token_id && (*d.pad_token_id < 0 || *d.pad_token_id >= d.vocab)) d.pad_token_id.reset();
  if (t == "mistral") d.sliding_window = c.get_optional_int("sliding_window");
  if (t == "qwen2")
    PEFT_CHECK(!c.get_bool("use_sliding_window", false), c.source(),
               ": use_sliding_window = true is not supported for qwen2 (per-layer windows)");
  const double attn_dropout = c.get_double("attention_dropout", 0.0);
  PEFT_CHECK(attn_dropout == 0, c.source(), ": attention_dropout ", attn_dropout,
             " is not supported (attention dropout is not implemented); set it to 0");
  return d;
}

LlamaAttention::LlamaAttention(const LlamaDims& d)
    : prefix_(d.prefix), heads_(d.heads), kv_heads_(d.kv_heads), head_dim_(d.head_dim) {
  register_module("q_proj", std::make_shared<Linear>(d.hidden, d.heads * d.head_dim, d.qkv_bias));
  register_module("k_proj", std::make_shared<Linear>(d.hidden, d.kv_heads * d.head_dim, d.qkv_bias));
  register_module("v_proj", std::make_shared<Linear>(d.hidden, d.kv_heads * d.head_dim, d.qkv_bias));
  register_module("o_proj", std::make_shared<Linear>(d.heads * d.head_dim, d.hidden, d.o_bias));
}

Tensor LlamaAttention::attend(const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& mask, Tensor* k_cache,
                              Tensor* v_cache) {
  const int64_t B = x.size(0), T = x.size(1);
  // (B, T, heads·hd) → (B, heads, T, hd), through the children table (LoRA layers run).
  auto heads = [&](const char* name, int64_t n) {
    return (*child(name))(x).view({B, T, n, head_dim_}).transpose(1, 2);
  };
  Tensor q = apply_rotary(heads("q_proj", heads_), cos, sin);
  Tensor k = apply_rotary(heads("k_proj", kv_heads_), cos, sin);
  Tensor v = heads("v_proj", kv_heads_);
  if (k_cache && v_cache) {
    if (k_cache->defined()) k = cat({*k_cache, k}, 2), v = cat({*v_cache, v}, 2);
    *k_cache = k, *v_cache = v;
  }
  Tensor o = scaled_dot_product_attention(q, k, v, mask, 0.0, !mask.defined(),
                                          1.0 / std::sqrt(static_cast<double>(head_dim_)));
  return (*child("o_proj"))(o.transpose(1, 2).reshape({B, T, heads_ * head_dim_}));
}

LlamaMLP::LlamaMLP(const LlamaDims& d) : prefix_(d.prefix) {
  register_module("gate_proj", std::make_shared<Linear>(d.hidden, d.intermediate, d.mlp_bias));
  register_module("up_proj", std::make_shared<Linear>(d.hidden, d.intermediate, d.mlp_bias));
  register_module("down_proj", std::make_shared<Linear>(d.intermediate, d.hidden, d.mlp_bias));
  register_module("act_fn", std::make_shared<Activation>(d.act));
}

Tensor LlamaMLP::forward(const Tensor& x) {
  Tensor h = mul((*child("act_fn"))((*child("gate_proj"))(x)), (*child("up_proj"))(x));
  return (*child("down_proj"))(h);
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaDims& d) : prefix_(d.prefix) {
  register_module("self_attn", std::make_shared<LlamaAttention>(d));
  register_module("mlp", std::make_shared<LlamaMLP>(d));
  register_module("input_layernorm", std::make_shared<RMSNorm>(d.hidden, d.eps, d.prefix + "RMSNorm"));
  register_module("post_attention_layernorm", std::make_shared<RMSNorm>(d.hidden, d.eps, d.prefix + "RMSNorm"));
}

Tensor LlamaDecoderLayer::run(const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& mask, Tensor* k_cache,
                              Tensor* v_cache) {
  auto attn = std::dynamic_pointer_cast<LlamaAttention>(child("self_attn"));
  PEFT_CHECK(attn != nullptr, type_name(), ": self_attn was replaced by a ", child("self_attn")->type_name(),
             "; only its projections can be adapted");
  Tensor h;
  {
    ModuleCallScope scope(*attn, "self_attn");
    h = attn->attend((*child("input_layernorm"))(x), cos, sin, mask, k_cache, v_cache);
  }
  Tensor y = add(x, h);
  return add(y, (*child("mlp"))((*child("post_attention_layernorm"))(y)));
}

LlamaModel::LlamaModel(const HfConfig& c, const LlamaDims& d) : prefix_(d.prefix), sliding_window_(d.sliding_window) {
  register_module("embed_tokens", std::make_shared<Embedding>(d.vocab, d.hidden, d.pad_token_id));
  auto layers = std::make_shared<ModuleList>();
  for (int64_t i = 0; i < d.layers; ++i) layers->push_back(std::make_shared<LlamaDecoderLayer>(d));
  register_module("layers", layers);
  register_module("norm", std::make_shared<RMSNorm>(d.hidden, d.eps, d.prefix + "RMSNorm"));
  register_module("rotary_emb", std::make_shared<LlamaRotaryEmbedding>(c, d));
}

Tensor LlamaModel::hidden_states(const Tensor& ids, const Tensor& attention_mask, const Tensor& position_ids,
                                 KvCache* cache) {
  const int64_t B = ids.size(0), T = ids.size(1), past = cache ? cache->length() : 0;
  Tensor x = (*child("embed_tokens"))(ids);
  // transformers' LlamaModel: positions 0..T-1 whatever the padding (position_ids = cache_position)
  // unless given (generate passes cumsum(mask) - 1).
  const Tensor positions = position_ids.defined() ? position_ids : Tensor::arange(T, DType::I64).unsqueeze(0);
  const auto& rope = static_cast<const LlamaRotaryEmbedding&>(*child("rotary_emb"));
  auto [cos, sin] = rope_cos_sin(rope.inv_freq(), positions, x.dtype(), x.device());
  const Tensor mask = decoder_attention_mask(attention_mask, B, T, past + T, sliding_window_, x.device());
  auto layers = child("layers")->named_children();
  if (cache) cache->prepare(layers.size(), type_name());
  for (size_t i = 0; i < layers.size(); ++i) {
    auto dec = std::dynamic_pointer_cast<LlamaDecoderLayer>(layers[i].second);
    PEFT_CHECK(dec != nullptr, type_name(), ": layers.", layers[i].first, " is a ", layers[i].second->type_name(),
               ", not a decoder layer");
    ModuleCallScope scope(*dec, "layers." + layers[i].first);
    x = cache ? dec->run(x, cos, sin, mask, &cache->k[i], &cache->v[i]) : dec->run(x, cos, sin, mask);
  }
  return (*child("norm"))(x);
}

LlamaForCausalLM::LlamaForCausalLM(const HfConfig& config) : CausalLM(config), dims_(LlamaDims::from(config)) {
  auto model = register_module("model", std::make_shared<LlamaModel>(config, dims_));
  auto head = register_module("lm_head", std::make_shared<Linear>(dims_.hidden, dims_.vocab, false));
  if (dims_.tie) head->param("weight") = model->child("embed_tokens")->param("weight");
}

std::vector<std::pair<std::string, std::string>> LlamaForCausalLM::tied_weights() const {
  if (!dims_.tie) return {};
  return {{"lm_head.weight", "model.embed_tokens.weight"}};
}

Tensor LlamaForCausalLM::run_tokens(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                                 KvCache* cache) {
  auto model = std::dynamic_pointer_cast<LlamaModel>(child("model"));
  PEFT_CHECK(model != nullptr, type_name(), ": child 'model' is not a ", dims_.prefix, "Model");
  Tensor h;
  {
    ModuleCallScope scope(*model, "model");
    h = model->hidden_states(input_ids, attention_mask, position_ids, cache);
  }
  return (*child("lm_head"))(h);
}

}  // namespace peft::nn::hf
