#include "layers/hf/opt.h"

#include <cmath>

#include "core/ops.h"
#include "layers/container.h"
#include "layers/embedding.h"
#include "layers/hf/llama.h"
#include "layers/linear.h"
#include "layers/norm.h"

namespace peft::nn::hf {

namespace {
constexpr int64_t kPositionOffset = 2;  // OPTLearnedPositionalEmbedding's offset (fairseq's padding rows)
}

OptDims OptDims::from(const HfConfig& c) {
  PEFT_CHECK(c.model_type() == "opt", c.source(), ": model_type \"", c.model_type(), "\" is not \"opt\"");
  OptDims d;
  d.hidden = c.get_int("hidden_size");
  d.ffn = c.get_int("ffn_dim");
  d.layers = c.get_int("num_hidden_layers");
  d.heads = c.get_int("num_attention_heads");
  d.vocab = c.get_int("vocab_size");
  d.max_positions = c.get_int("max_position_embeddings");
  d.word_dim = c.get_int("word_embed_proj_dim", d.hidden);
  PEFT_CHECK(d.hidden > 0 && d.ffn > 0 && d.layers >= 0 && d.heads > 0 && d.vocab > 0 && d.max_positions > 0 &&
                 d.word_dim > 0,
             c.source(), ": sizes must be positive");
  PEFT_CHECK(d.hidden % d.heads == 0, c.source(), ": hidden_size ", d.hidden, " is not divisible by num_attention_heads ",
             d.heads);
  d.pre_ln = c.get_bool("do_layer_norm_before", true);
  d.final_ln = d.pre_ln && !c.get_bool("_remove_final_layer_norm", false);
  d.ln_affine = c.get_bool("layer_norm_elementwise_affine", true);
  d.bias = c.get_bool("enable_bias", true);
  d.tie = c.get_bool("tie_word_embeddings", true);
  d.dropout = c.get_double("dropout", 0.1);
  d.layerdrop = c.get_double("layerdrop", 0.0);
  d.act = c.get_string("activation_function", "relu");
  check_activation(c, "activation_function", d.act);
  d.pad_token_id = c.get_optional_int("pad_token_id");
  if (d.pad_token_id && (*d.pad_token_id < 0 || *d.pad_token_id >= d.vocab)) d.pad_token_id.reset();
  const double attn_dropout = c.get_double("attention_dropout", 0.0);
  PEFT_CHECK(attn_dropout == 0, c.source(), ": attention_dropout ", attn_dropout,
             " is not supported (attention dropout is not implemented); set it to 0");
  return d;
}

OPTAttention::OPTAttention(const OptDims& d) : heads_(d.heads), head_dim_(d.hidden / d.heads) {
  // transformers' registration order: k, v, q, out.
  register_module("k_proj", std::make_shared<Linear>(d.hidden, d.hidden, d.bias));
  register_module("v_proj", std::make_shared<Linear>(d.hidden, d.hidden, d.bias));
  register_module("q_proj", std::make_shared<Linear>(d.hidden, d.hidden, d.bias));
  register_module("out_proj", std::make_shared<Linear>(d.hidden, d.hidden, d.bias));
}

Tensor OPTAttention::attend(const Tensor& x, const Tensor& mask, Tensor* k_cache, Tensor* v_cache) {
  const int64_t B = x.size(0), T = x.size(1);
  auto heads = [&](const char* name) { return (*child(name))(x).view({B, T, heads_, head_dim_}).transpose(1, 2); };
  Tensor q = heads("q_proj"), k = heads("k_proj"), v = heads("v_proj");
  if (k_cache && v_cache) {
    if (k_cache->defined()) k = cat({*k_cache, k}, 2), v = cat({*v_cache, v}, 2);
    *k_cache = k, *v_cache = v;
  }
  Tensor o = scaled_dot_product_attention(q, k, v, mask, 0.0, !mask.defined(),
                                          1.0 / std::sqrt(static_cast<double>(head_dim_)));
  return (*child("out_proj"))(o.transpose(1, 2).reshape({B, T, heads_ * head_dim_}));
}

OPTDecoderLayer::OPTDecoderLayer(const OptDims& d) : pre_ln_(d.pre_ln), dropout_(d.dropout) {
  register_module("self_attn", std::make_shared<OPTAttention>(d));
  register_module("activation_fn", std::make_shared<Activation>(d.act));
  register_module("self_attn_layer_norm", std::make_shared<LayerNorm>(d.hidden, 1e-5, d.ln_affine));
  register_module("fc1", std::make_shared<Linear>(d.hidden, d.ffn, d.bias));
  register_module("fc2", std::make_shared<Linear>(d.ffn, d.hidden, d.bias));
  register_module("final_layer_norm", std::make_shared<LayerNorm>(d.hidden, 1e-5, d.ln_affine));
}

Tensor OPTDecoderLayer::run(const Tensor& x, const Tensor& mask, Tensor* k_cache, Tensor* v_cache) {
  auto attn = std::dynamic_pointer_cast<OPTAttention>(child("self_attn"));
  PEFT_CHECK(attn != nullptr, type_name(), ": self_attn was replaced by a ", child("self_attn")->type_name(),
             "; only its projections can be adapted");
  Tensor h = pre_ln_ ? (*child("self_attn_layer_norm"))(x) : x;
  {
    ModuleCallScope scope(*attn, "self_attn");
    h = attn->attend(h, mask, k_cache, v_cache);
  }
  h = add(x, dropout(h, dropout_, is_training()));
  if (!pre_ln_) h = (*child("self_attn_layer_norm"))(h);
  Tensor f = pre_ln_ ? (*child("final_layer_norm"))(h) : h;
  f = (*child("fc2"))((*child("activation_fn"))((*child("fc1"))(f)));
  h = add(h, dropout(f, dropout_, is_training()));
  return pre_ln_ ? h : (*child("final_layer_norm"))(h);
}

OPTDecoder::OPTDecoder(const OptDims& d) : layerdrop_(d.layerdrop) {
  register_module("embed_tokens", std::make_shared<Embedding>(d.vocab, d.word_dim, d.pad_token_id));
  register_module("embed_positions", std::make_shared<Embedding>(d.max_positions + kPositionOffset, d.hidden));
  if (d.word_dim != d.hidden) {
    register_module("project_out", std::make_shared<Linear>(d.hidden, d.word_dim, false));
    register_module("project_in", std::make_shared<Linear>(d.word_dim, d.hidden, false));
  }
  if (d.final_ln) register_module("final_layer_norm", std::make_shared<LayerNorm>(d.hidden, 1e-5, d.ln_affine));
  auto layers = std::make_shared<ModuleList>();
  for (int64_t i = 0; i < d.layers; ++i) layers->push_back(std::make_shared<OPTDecoderLayer>(d));
  register_module("layers", layers);
}

Tensor OPTDecoder::hidden_states(const Tensor& ids, const Tensor& attention_mask, const Tensor& position_ids,
                                 KvCache* cache) {
  PEFT_CHECK(!(is_training() && layerdrop_ > 0), "OPTDecoder: layerdrop ", layerdrop_,
             " is not supported in training (it would skip layers at random); set it to 0");
  const int64_t B = ids.size(0), T = ids.size(1), past = cache ? cache->length() : 0;
  const int64_t max_pos = child("embed_positions")->param("weight").size(0);
  // transformers' OPT without position_ids: cumsum(mask) · mask − 1, so padding does not advance
  // positions and padded slots read row 1 (after the offset).
  std::vector<int64_t> pos =
      (position_ids.defined() ? position_ids
       : positions_from_mask(attention_mask.defined() ? attention_mask : Tensor::ones({B, T}, DType::I64), -1))
          .to_vector<int64_t>();
  for (auto& p : pos) {
    p += kPositionOffset;
    PEFT_CHECK(p >= 0 && p < max_pos, "OPTDecoder: position ", p - kPositionOffset, " is outside [0, ",
               max_pos - kPositionOffset, ") (max_position_embeddings)");
  }
  const Tensor positions = Tensor::from_vector(pos, {B, T}).to(ids.device());
  Tensor x = (*child("embed_tokens"))(ids);
  if (has_child("project_in")) x = (*child("project_in"))(x);
  x = add(x, (*child("embed_positions"))(positions));
  const Tensor mask = decoder_attention_mask(attention_mask, B, T, past + T, std::nullopt, x.device());
  auto layers = child("layers")->named_children();
  if (cache) cache->prepare(layers.size(), type_name());
  for (size_t i = 0; i < layers.size(); ++i) {
    auto dec = std::dynamic_pointer_cast<OPTDecoderLayer>(layers[i].second);
    PEFT_CHECK(dec != nullptr, type_name(), ": layers.", layers[i].first, " is a ", layers[i].second->type_name(),
               ", not a decoder layer");
    ModuleCallScope scope(*dec, "layers." + layers[i].first);
    x = cache ? dec->run(x, mask, &cache->k[i], &cache->v[i]) : dec->run(x, mask);
  }
  if (has_child("final_layer_norm")) x = (*child("final_layer_norm"))(x);
  if (has_child("project_out")) x = (*child("project_out"))(x);
  return x;
}

OPTModel::OPTModel(const OptDims& d) { register_module("decoder", std::make_shared<OPTDecoder>(d)); }

OPTForCausalLM::OPTForCausalLM(const HfConfig& config) : CausalLM(config), dims_(OptDims::from(config)) {
  auto model = register_module("model", std::make_shared<OPTModel>(dims_));
  auto head = register_module("lm_head", std::make_shared<Linear>(dims_.word_dim, dims_.vocab, false));
  if (dims_.tie) head->param("weight") = model->child("decoder")->child("embed_tokens")->param("weight");
}

std::vector<std::pair<std::string, std::string>> OPTForCausalLM::tied_weights() const {
  if (!dims_.tie) return {};
  return {{"lm_head.weight", "model.decoder.embed_tokens.weight"}};
}

Tensor OPTForCausalLM::run_tokens(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                                 KvCache* cache) {
  auto decoder = std::dynamic_pointer_cast<OPTDecoder>(child("model")->child("decoder"));
  PEFT_CHECK(decoder != nullptr, type_name(), ": model.decoder is not an OPTDecoder");
  Tensor h;
  {
    ModuleCallScope scope(*decoder, "model.decoder");
    h = decoder->hidden_states(input_ids, attention_mask, position_ids, cache);
  }
  return (*child("lm_head"))(h);
}

}  // namespace peft::nn::hf
