#include "layers/hf/t5.h"

#include <cmath>
#include <limits>

#include "core/ops.h"
#include "layers/activation.h"
#include "layers/container.h"
#include "layers/embedding.h"
#include "layers/hf/llama.h"  // Activation: transformers' ACT2FN modules
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/norm.h"

namespace peft::nn::hf {

T5Dims T5Dims::from(const HfConfig& c) {
  T5Dims d;
  const std::string& t = c.model_type();
  PEFT_CHECK(t == "t5" || t == "mt5", c.source(), ": model_type \"", t, "\" is not a T5-family model (t5, mt5)");
  const bool mt5 = t == "mt5";
  d.prefix = mt5 ? "MT5" : "T5";
  // T5Config's / MT5Config's defaults.
  d.vocab = c.get_int("vocab_size", mt5 ? 250112 : 32128);
  d.d_model = c.get_int("d_model", 512);
  d.d_kv = c.get_int("d_kv", 64);
  d.d_ff = c.get_int("d_ff", mt5 ? 1024 : 2048);
  d.layers = c.get_int("num_layers", mt5 ? 8 : 6);
  d.decoder_layers = c.get_int("num_decoder_layers", d.layers);
  d.heads = c.get_int("num_heads", mt5 ? 6 : 8);
  d.buckets = c.get_int("relative_attention_num_buckets", 32);
  d.max_distance = c.get_int("relative_attention_max_distance", 128);
  PEFT_CHECK(d.vocab > 0 && d.d_model > 0 && d.d_kv > 0 && d.d_ff > 0 && d.heads > 0 && d.layers >= 0 &&
                 d.decoder_layers >= 0 && d.buckets >= 4 && d.max_distance > d.buckets / 2,
             c.source(), ": sizes must be positive, and relative_attention_max_distance above half the buckets (the "
             "decoder's exact range; at or below it the logarithmic buckets divide by log(1) = 0)");
  d.eps = c.get_double("layer_norm_epsilon", 1e-6);
  d.dropout = c.get_double("dropout_rate", 0.1);
  PEFT_CHECK(d.dropout >= 0 && d.dropout < 1, c.source(), ": dropout_rate ", d.dropout, " must be in [0, 1)");
  d.init_factor = c.get_double("initializer_factor", 1.0);
  const std::string proj = c.get_string("feed_forward_proj", mt5 ? "gated-gelu" : "relu");
  // As T5Config: "ACT" or "gated-ACT"; "gated-gelu" means gelu_new (the tanh approximation).
  const size_t dash = proj.find('-');
  PEFT_CHECK(proj.find('-', dash == std::string::npos ? proj.size() : dash + 1) == std::string::npos &&
                 (dash == std::string::npos || proj.substr(0, dash) == "gated"),
             c.source(), ": feed_forward_proj \"", proj,
             "\" is not a valid activation function of the dense layer (`gated-{ACT_FN}` or `{ACT_FN}`)");
  d.gated = dash != std::string::npos;
  d.act = proj == "gated-gelu" ? "gelu_new" : proj.substr(dash == std::string::npos ? 0 : dash + 1);
  check_activation(c, "feed_forward_proj", d.act);
  // See the header: the config.json flag decides both the head's tie and T5's output scaling.
  const bool tie_flag = c.get_bool("tie_word_embeddings", true);
  d.tie = tie_flag;
  d.scale_output = !mt5 && c.get_bool("scale_decoder_outputs", tie_flag);
  d.decoder_start_token_id = c.get_int("decoder_start_token_id", 0);
  d.pad_token_id = c.get_int("pad_token_id", 0);
  return d;
}

int64_t t5_relative_position_bucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                                    int64_t max_distance) {
  int64_t bucket = 0;
  if (bidirectional) {
    num_buckets /= 2;
    if (relative_position > 0) bucket += num_buckets;
    relative_position = std::abs(relative_position);
  } else {
    relative_position = -std::min<int64_t>(relative_position, 0);
  }
  const int64_t max_exact = num_buckets / 2;
  if (relative_position < max_exact) return bucket + relative_position;
  // torch: (log(float(rp) / max_exact) / math.log(max_distance / max_exact) * (nb - max_exact)).long(),
  // all in F32 (the Python float divisor rounds to F32 in the tensor op).
  const float ratio = static_cast<float>(relative_position) / static_cast<float>(max_exact);
  const float denom = static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  const float scaled = std::log(ratio) / denom * static_cast<float>(num_buckets - max_exact);
  const int64_t large = std::min<int64_t>(max_exact + static_cast<int64_t>(scaled), num_buckets - 1);
  return bucket + large;
}

// ---------------------------------------------------------------- attention

T5Attention::T5Attention(const T5Dims& d, bool has_bias)
    : prefix_(d.prefix), heads_(d.heads), d_kv_(d.d_kv), buckets_(d.buckets), max_distance_(d.max_distance),
      dropout_(d.dropout) {
  const int64_t inner = d.heads * d.d_kv;
  register_module("q", std::make_shared<Linear>(d.d_model, inner, false));
  register_module("k", std::make_shared<Linear>(d.d_model, inner, false));
  register_module("v", std::make_shared<Linear>(d.d_model, inner, false));
  register_module("o", std::make_shared<Linear>(inner, d.d_model, false));
  if (has_bias) register_module("relative_attention_bias", std::make_shared<Embedding>(d.buckets, d.heads));
}

Tensor T5Attention::compute_bias(int64_t Tq, int64_t Tk, int64_t past, bool bidirectional, Device device) {
  PEFT_CHECK(has_child("relative_attention_bias"), type_name(), ": compute_bias needs relative_attention_bias");
  std::vector<int64_t> ids(static_cast<size_t>(Tq * Tk));
  for (int64_t i = 0; i < Tq; ++i)
    for (int64_t j = 0; j < Tk; ++j)
      ids[static_cast<size_t>(i * Tk + j)] =
          t5_relative_position_bucket(j - (i + past), bidirectional, buckets_, max_distance_);
  const Tensor bucket = Tensor::from_vector(ids, {Tq, Tk}).to(device);
  // (Tq, Tk, H) → (1, H, Tq, Tk), through the child so an adapted embedding runs.
  return (*child("relative_attention_bias"))(bucket).permute({2, 0, 1}).unsqueeze(0);
}

Tensor T5Attention::attend(const Tensor& x, const Tensor& kv, const Tensor& bias) {
  const int64_t B = x.size(0), Tq = x.size(1), Tk = kv.size(1);
  auto heads = [&](const char* name, const Tensor& src, int64_t T) {
    return (*child(name))(src).view({B, T, heads_, d_kv_}).transpose(1, 2);
  };
  const Tensor q = heads("q", x, Tq), k = heads("k", kv, Tk), v = heads("v", kv, Tk);
  const double p = is_training() ? dropout_ : 0.0;
  Tensor o;
  if (p > 0 || bias.requires_grad()) {
    // Composed, as transformers' eager path: dropout on the probabilities and a gradient for a
    // trained position bias, which the fused op does not give its mask.
    Tensor probs = softmax(add(matmul(q, k.transpose(2, 3)), bias), -1);
    o = matmul(dropout(probs, p, true), v);
  } else {
    o = scaled_dot_product_attention(q, k, v, bias, 0.0, false, 1.0);  // T5 does not scale the scores
  }
  return (*child("o"))(o.transpose(1, 2).reshape({B, Tq, heads_ * d_kv_}));
}

// ---------------------------------------------------------------- blocks

namespace {

// A container with a fixed type name: T5Block, T5LayerFF, ... (modules whose work the stack does).
class T5Part : public Module {
 public:
  PEFT_MODULE_CLONE(T5Part)
  explicit T5Part(std::string type) : type_(std::move(type)) {}
  std::string type_name() const override { return type_; }

 private:
  std::string type_;
};

ModulePtr layer_norm(const T5Dims& d) { return std::make_shared<RMSNorm>(d.d_model, d.eps, d.prefix + "LayerNorm"); }

ModulePtr attention_layer(const T5Dims& d, bool cross, bool has_bias) {
  auto m = std::make_shared<T5Part>(d.prefix + (cross ? "LayerCrossAttention" : "LayerSelfAttention"));
  m->register_module(cross ? "EncDecAttention" : "SelfAttention", std::make_shared<T5Attention>(d, has_bias));
  m->register_module("layer_norm", layer_norm(d));
  m->register_module("dropout", std::make_shared<Dropout>(d.dropout));
  return m;
}

ModulePtr feed_forward_layer(const T5Dims& d) {
  auto dense = std::make_shared<T5Part>(d.prefix + (d.gated ? "DenseGatedActDense" : "DenseActDense"));
  if (d.gated) {
    dense->register_module("wi_0", std::make_shared<Linear>(d.d_model, d.d_ff, false));
    dense->register_module("wi_1", std::make_shared<Linear>(d.d_model, d.d_ff, false));
  } else {
    dense->register_module("wi", std::make_shared<Linear>(d.d_model, d.d_ff, false));
  }
  dense->register_module("wo", std::make_shared<Linear>(d.d_ff, d.d_model, false));
  dense->register_module("dropout", std::make_shared<Dropout>(d.dropout));
  dense->register_module("act", std::make_shared<Activation>(d.act));
  auto ff = std::make_shared<T5Part>(d.prefix + "LayerFF");
  ff->register_module("DenseReluDense", dense);
  ff->register_module("layer_norm", layer_norm(d));
  ff->register_module("dropout", std::make_shared<Dropout>(d.dropout));
  return ff;
}

Tensor run_feed_forward(Module& ff, const Tensor& x) {
  Module& dense = *ff.child("DenseReluDense");
  const Tensor h = (*ff.child("layer_norm"))(x);
  Tensor a = dense.has_child("wi") ? (*dense.child("act"))((*dense.child("wi"))(h))
                                   : mul((*dense.child("act"))((*dense.child("wi_0"))(h)), (*dense.child("wi_1"))(h));
  const Tensor y = (*dense.child("wo"))((*dense.child("dropout"))(a));
  return add(x, (*ff.child("dropout"))(y));
}

T5Attention& attention_of(Module& layer, const char* name) {
  auto* a = dynamic_cast<T5Attention*>(layer.child(name).get());
  PEFT_CHECK(a != nullptr, layer.type_name(), ": ", name, " was replaced by a ", layer.child(name)->type_name(),
             "; only its projections can be adapted");
  return *a;
}

// The additive key mask (B, 1, 1, Tk) of a (B, Tk) I64 mask in F32: 0 for tokens, the dtype's
// lowest value for padding (transformers' masks); undefined when nothing is padded.
Tensor key_padding_bias(const Tensor& mask, DType dtype, Device device) {
  if (!mask.defined()) return Tensor();
  auto keep = mask.to_vector<int64_t>();
  bool padded = false;
  std::vector<float> add_(keep.size(), 0.f);
  for (size_t i = 0; i < keep.size(); ++i)
    if (keep[i] == 0) add_[i] = std::numeric_limits<float>::lowest(), padded = true;
  if (!padded) return Tensor();
  return Tensor::from_vector(add_, {mask.size(0), 1, 1, mask.size(1)}).to(dtype).to(device);
}

// The causal additive mask (1, 1, T, T): lowest above the diagonal.
Tensor causal_bias(int64_t T, DType dtype, Device device) {
  std::vector<float> v(static_cast<size_t>(T * T), 0.f);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = i + 1; j < T; ++j) v[static_cast<size_t>(i * T + j)] = std::numeric_limits<float>::lowest();
  return Tensor::from_vector(v, {1, 1, T, T}).to(dtype).to(device);
}

}  // namespace

T5Stack::T5Stack(const T5Dims& d, bool is_decoder, const Tensor& shared) : prefix_(d.prefix), is_decoder_(is_decoder) {
  register_module("embed_tokens", std::make_shared<Embedding>(shared));
  auto blocks = std::make_shared<ModuleList>();
  for (int64_t i = 0; i < (is_decoder ? d.decoder_layers : d.layers); ++i) {
    auto layer = std::make_shared<ModuleList>();
    layer->push_back(attention_layer(d, false, i == 0));
    if (is_decoder) layer->push_back(attention_layer(d, true, false));
    layer->push_back(feed_forward_layer(d));
    auto block = std::make_shared<T5Part>(d.prefix + "Block");
    block->register_module("layer", layer);
    blocks->push_back(block);
  }
  register_module("block", blocks);
  register_module("final_layer_norm", layer_norm(d));
  register_module("dropout", std::make_shared<Dropout>(d.dropout));
}

Tensor T5Stack::run(const Tensor& ids, const Tensor& mask, const Tensor& encoder_hidden, const Tensor& encoder_mask) {
  const int64_t T = ids.size(1);
  Tensor x = (*child("dropout"))((*child("embed_tokens"))(ids));
  const DType dt = x.dtype();
  const Device dev = x.device();
  // Block 0's self-attention computes the position bias; the mask is folded into it once.
  Tensor self_bias, cross_bias;
  auto blocks = child("block")->named_children();
  for (size_t i = 0; i < blocks.size(); ++i) {
    Module& layers = *blocks[i].second->child("layer");
    ModuleCallScope scope(*blocks[i].second, "block." + blocks[i].first);
    Module& self_layer = *layers.child("0");
    T5Attention& self_attn = attention_of(self_layer, "SelfAttention");
    if (i == 0) {
      self_bias = self_attn.compute_bias(T, T, 0, !is_decoder_, dev).to(dt);
      if (is_decoder_) self_bias = add(self_bias, causal_bias(T, dt, dev));
      if (const Tensor pad = key_padding_bias(mask, dt, dev); pad.defined()) self_bias = add(self_bias, pad);
      if (is_decoder_) {
        cross_bias = key_padding_bias(encoder_mask, dt, dev);
        if (!cross_bias.defined()) cross_bias = Tensor::zeros({1, 1, 1, encoder_hidden.size(1)}, dt, dev);
      }
    }
    const Tensor h = (*self_layer.child("layer_norm"))(x);
    x = add(x, (*self_layer.child("dropout"))(self_attn.attend(h, h, self_bias)));
    if (is_decoder_) {
      Module& cross_layer = *layers.child("1");
      const Tensor hc = (*cross_layer.child("layer_norm"))(x);
      x = add(x, (*cross_layer.child("dropout"))(attention_of(cross_layer, "EncDecAttention").attend(hc, encoder_hidden, cross_bias)));
    }
    x = run_feed_forward(*layers.child(is_decoder_ ? "2" : "1"), x);
  }
  return (*child("dropout"))((*child("final_layer_norm"))(x));
}

// ---------------------------------------------------------------- the model

T5ForConditionalGeneration::T5ForConditionalGeneration(const HfConfig& config)
    : PretrainedModel(config), dims_(T5Dims::from(config)) {
  auto shared = register_module("shared", std::make_shared<Embedding>(dims_.vocab, dims_.d_model));
  const Tensor& w = shared->param("weight");
  register_module("encoder", std::make_shared<T5Stack>(dims_, false, w));
  register_module("decoder", std::make_shared<T5Stack>(dims_, true, w));
  auto head = register_module("lm_head", std::make_shared<Linear>(dims_.d_model, dims_.vocab, false));
  if (dims_.tie) head->param("weight") = w;
}

std::vector<std::pair<std::string, std::string>> T5ForConditionalGeneration::tied_weights() const {
  std::vector<std::pair<std::string, std::string>> t = {{"encoder.embed_tokens.weight", "shared.weight"},
                                                        {"decoder.embed_tokens.weight", "shared.weight"}};
  if (dims_.tie) t.emplace_back("lm_head.weight", "shared.weight");
  return t;
}

void T5ForConditionalGeneration::init_weights() {
  // transformers' T5PreTrainedModel._init_weights, factor = initializer_factor.
  const double f = dims_.init_factor, dm = static_cast<double>(dims_.d_model);
  const double dff = static_cast<double>(dims_.d_ff), inner = static_cast<double>(dims_.heads * dims_.d_kv);
  auto normal = [](Tensor& t, double std) { init::normal_(t, 0.0, std); };
  normal(child("shared")->param("weight"), f);
  if (!dims_.tie) normal(child("lm_head")->param("weight"), f);
  NoGradGuard no_grad;
  for (auto& [name, m] : named_modules()) {
    if (auto* a = dynamic_cast<T5Attention*>(m.get())) {
      normal(a->child("q")->param("weight"), f * std::pow(dm * static_cast<double>(dims_.d_kv), -0.5));
      normal(a->child("k")->param("weight"), f * std::pow(dm, -0.5));
      normal(a->child("v")->param("weight"), f * std::pow(dm, -0.5));
      normal(a->child("o")->param("weight"), f * std::pow(inner, -0.5));
      if (a->has_child("relative_attention_bias"))
        normal(a->child("relative_attention_bias")->param("weight"), f * std::pow(dm, -0.5));
    } else if (m->type_name() == dims_.prefix + "LayerNorm" && !m->param("weight").device().is_meta()) {
      m->param("weight").fill_(f);
    } else if (m->has_child("wo") && m->has_child("act")) {
      for (const char* wi : {"wi", "wi_0", "wi_1"})
        if (m->has_child(wi)) normal(m->child(wi)->param("weight"), f * std::pow(dm, -0.5));
      normal(m->child("wo")->param("weight"), f * std::pow(dff, -0.5));
    }
  }
}

void T5ForConditionalGeneration::check_ids(const Tensor& ids, const Tensor& mask, const char* what) const {
  PEFT_CHECK(ids.defined() && ids.dtype() == DType::I64 && ids.dim() == 2, type_name(), ": ", what,
             " must be I64 of shape (batch, seq), got ",
             ids.defined() ? dtype_name(ids.dtype()) + std::string(" ") + shape_str(ids.shape()) : std::string("none"));
  if (mask.defined())
    PEFT_CHECK(mask.dtype() == DType::I64 && mask.shape() == ids.shape(), type_name(), ": the mask of ", what,
               " must be I64 of shape ", shape_str(ids.shape()), ", got ", dtype_name(mask.dtype()), " ",
               shape_str(mask.shape()));
  if (!ids.device().is_cpu()) return;  // device ids are checked by the embedding's gather kernel
  for (int64_t id : ids.to_vector<int64_t>())
    PEFT_CHECK(id >= 0 && id < dims_.vocab, type_name(), ": token id ", id, " in ", what,
               " is outside the vocabulary [0, ", dims_.vocab, ")");
}

namespace {
T5Stack& stack_of(Module& m, const char* name) {
  auto* s = dynamic_cast<T5Stack*>(m.child(name).get());
  PEFT_CHECK(s != nullptr, m.type_name(), ": child '", name, "' is not a T5 stack");
  return *s;
}
}  // namespace

Tensor T5ForConditionalGeneration::encode(const Tensor& input_ids, const Tensor& attention_mask) {
  check_ids(input_ids, attention_mask, "input_ids");
  T5Stack& enc = stack_of(*this, "encoder");
  ModuleCallScope scope(enc, "encoder");
  return enc.run(input_ids, attention_mask);
}

Tensor T5ForConditionalGeneration::decode(const Tensor& decoder_input_ids, const Tensor& encoder_hidden,
                                          const Tensor& attention_mask, const Tensor& decoder_attention_mask) {
  check_ids(decoder_input_ids, decoder_attention_mask, "decoder_input_ids");
  PEFT_CHECK(encoder_hidden.defined() && encoder_hidden.dim() == 3 && encoder_hidden.size(0) == decoder_input_ids.size(0) &&
                 encoder_hidden.size(2) == dims_.d_model,
             type_name(), ": encoder_hidden must be (batch, seq, ", dims_.d_model, ") with the decoder's batch");
  if (attention_mask.defined())
    PEFT_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == encoder_hidden.size(0) &&
                   attention_mask.size(1) == encoder_hidden.size(1) && attention_mask.dtype() == DType::I64,
               type_name(), ": attention_mask must be I64 (batch, encoder seq)");
  Tensor h;
  {
    T5Stack& dec = stack_of(*this, "decoder");
    ModuleCallScope scope(dec, "decoder");
    h = dec.run(decoder_input_ids, decoder_attention_mask, encoder_hidden, attention_mask);
  }
  if (dims_.scale_output) h = mul(h, std::pow(static_cast<double>(dims_.d_model), -0.5));
  return (*child("lm_head"))(h);
}

Tensor T5ForConditionalGeneration::logits(const Tensor& input_ids, const Tensor& attention_mask,
                                          const Tensor& decoder_input_ids, const Tensor& decoder_attention_mask) {
  PEFT_CHECK(decoder_input_ids.defined(), type_name(), ": logits needs decoder_input_ids (an encoder-decoder model)");
  const Tensor enc = encode(input_ids, attention_mask);
  return decode(decoder_input_ids, enc, attention_mask, decoder_attention_mask);
}

Tensor T5ForConditionalGeneration::shift_right(const Tensor& labels) const {
  PEFT_CHECK(labels.defined() && labels.dtype() == DType::I64 && labels.dim() == 2, type_name(),
             ": labels must be I64 (batch, seq)");
  const int64_t B = labels.size(0), T = labels.size(1);
  auto l = labels.to_vector<int64_t>();
  std::vector<int64_t> out(l.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const int64_t v = t == 0 ? dims_.decoder_start_token_id : l[static_cast<size_t>(b * T + t - 1)];
      out[static_cast<size_t>(b * T + t)] = v == -100 ? dims_.pad_token_id : v;
    }
  return Tensor::from_vector(out, {B, T}).to(labels.device());
}

Tensor T5ForConditionalGeneration::forward(const Tensor&) {
  PEFT_ERROR(type_name(), " is an encoder-decoder model: call logits(input_ids, attention_mask, decoder_input_ids) "
             "(one input tensor is not enough)");
}

}  // namespace peft::nn::hf
