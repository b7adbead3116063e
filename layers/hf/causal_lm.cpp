#include "layers/hf/causal_lm.h"

#include <cmath>

#include "core/ops.h"
#include "layers/embedding.h"
#include "layers/linear.h"
#include "layers/norm.h"

namespace peft::nn::hf {

void CausalLM::init_weights() {
  const double std = config_.get_double("initializer_range", 0.02);
  NoGradGuard no_grad;
  for (auto& [name, m] : named_modules()) {
    for (auto& [pname, p] : m->named_parameters(false)) {
      if (p.device().is_meta()) continue;  // built for counting (MetaDeviceGuard): nothing to draw
      const bool is_weight = pname == "weight";
      if (dynamic_cast<Linear*>(m.get()) || dynamic_cast<Embedding*>(m.get())) {
        if (is_weight) p.copy_(Tensor::randn(p.shape(), DType::F32, nullptr, 0, std));
        else p.zero_();
      } else {  // norms: weight 1, bias 0
        p.fill_(is_weight ? 1.0 : 0.0);
      }
    }
    if (auto* e = dynamic_cast<Embedding*>(m.get()); e && e->padding_idx() && !e->param("weight").device().is_meta())
      m->param("weight").select(0, *e->padding_idx()).zero_();
  }
}

void CausalLM::check_ids(const Tensor& ids) const {
  PEFT_CHECK(ids.defined() && ids.dtype() == DType::I64 && ids.dim() == 2, type_name(),
             ": input_ids must be I64 of shape (batch, seq), got ",
             ids.defined() ? dtype_name(ids.dtype()) + std::string(" ") + shape_str(ids.shape()) : std::string("none"));
  if (!ids.device().is_cpu()) return;
  const int64_t V = vocab_size();
  for (int64_t id : ids.to_vector<int64_t>())
    PEFT_CHECK(id >= 0 && id < V, type_name(), ": token id ", id, " is outside the vocabulary [0, ", V, ")");
}

Tensor CausalLM::logits(const Tensor& input_ids, const Tensor& attention_mask) {
  check_ids(input_ids);
  if (attention_mask.defined())
    PEFT_CHECK(attention_mask.dtype() == DType::I64 && attention_mask.shape() == input_ids.shape(), type_name(),
               ": attention_mask must be I64 with input_ids' shape ", shape_str(input_ids.shape()), ", got ",
               dtype_name(attention_mask.dtype()), " ", shape_str(attention_mask.shape()));
  return run_tokens(input_ids, attention_mask, Tensor(), nullptr);
}

Tensor CausalLM::logits_step(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                             KvCache& cache) {
  check_ids(input_ids);
  PEFT_CHECK(position_ids.defined() && position_ids.shape() == input_ids.shape() && position_ids.dtype() == DType::I64,
             type_name(), ": logits_step needs I64 position_ids of input_ids' shape ", shape_str(input_ids.shape()));
  return run_tokens(input_ids, attention_mask, position_ids, &cache);
}

void KvCache::prepare(size_t layers, const std::string& who) {
  if (k.empty()) k.resize(layers), v.resize(layers);
  PEFT_CHECK(k.size() == layers && v.size() == layers, who, ": the KV cache holds ", k.size(), " layers, the model ",
             layers);
}

Tensor decoder_attention_mask(const Tensor& attention_mask, int64_t B, int64_t Tq, int64_t Tk,
                              std::optional<int64_t> window, Device device) {
  std::vector<int64_t> keep(static_cast<size_t>(B * Tk), 1);
  bool padded = false;
  if (attention_mask.defined()) {
    PEFT_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == Tk,
               "attention_mask of shape ", shape_str(attention_mask.shape()), " does not cover the ", Tk,
               " tokens so far of ", B, " sequences");
    keep = attention_mask.to_vector<int64_t>();
    for (auto& k : keep) {
      k = k != 0;
      padded = padded || !k;
    }
  }
  const bool cut = window && *window < Tk;
  if (!padded && !cut && Tq == Tk) return Tensor();
  std::vector<int64_t> out(static_cast<size_t>(B * Tq * Tk), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Tq; ++i) {
      const int64_t slot = Tk - Tq + i;
      for (int64_t j = 0; j <= slot; ++j)
        out[static_cast<size_t>((b * Tq + i) * Tk + j)] = keep[static_cast<size_t>(b * Tk + j)] && (!cut || slot - j < *window);
    }
  return Tensor::from_vector(out, {B, 1, Tq, Tk}).to(device);
}

Tensor positions_from_mask(const Tensor& attention_mask, int64_t pad_position) {
  const int64_t B = attention_mask.size(0), T = attention_mask.size(1);
  auto v = attention_mask.to_vector<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    int64_t run = 0;
    for (int64_t t = 0; t < T; ++t) {
      auto& x = v[static_cast<size_t>(b * T + t)];
      run += x != 0;
      x = x != 0 ? run - 1 : pad_position;
    }
  }
  return Tensor::from_vector(v, {B, T});
}

std::vector<double> rope_inv_freq(const HfConfig& c, int64_t head_dim) {
  // transformers 5 keeps everything in rope_parameters; 4.x has rope_theta + rope_scaling.
  nlohmann::json params = nlohmann::json::object();
  if (c.has("rope_parameters")) params = c.json().at("rope_parameters");
  else if (c.has("rope_scaling")) params = c.json().at("rope_scaling");
  PEFT_CHECK(params.is_object(), c.source(), ": rope_scaling / rope_parameters must be an object, got ", params.dump());
  params["model_type"] = "rope";  // HfConfig wants one; the getters give typed errors naming the file
  const HfConfig p(params, c.source() + " (rope parameters)");
  const double theta = p.has("rope_theta") ? p.get_double("rope_theta", 10000) : c.get_double("rope_theta", 10000);
  std::string type = p.get_string("rope_type", p.get_string("type", "default"));
  const double partial = c.get_double("partial_rotary_factor", 1.0);
  const int64_t dim = static_cast<int64_t>(static_cast<double>(head_dim) * partial);
  PEFT_CHECK(dim == head_dim, c.source(), ": partial_rotary_factor ", partial, " is not supported");
  std::vector<double> inv(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i)
    inv[static_cast<size_t>(i)] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(dim));
  if (type == "default") return inv;
  const double factor = p.get_double("factor", 1.0);
  if (type == "linear") {
    for (auto& f : inv) f /= factor;
    return inv;
  }
  if (type == "llama3") {
    const double low = p.get_double("low_freq_factor", 1.0), high = p.get_double("high_freq_factor", 4.0);
    const double old_ctx = static_cast<double>(p.get_int("original_max_position_embeddings"));
    PEFT_CHECK(high > low, c.source(), ": llama3 rope needs high_freq_factor > low_freq_factor");
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    const double pi = std::acos(-1.0);
    for (auto& f : inv) {
      const double wavelen = 2 * pi / f;
      if (wavelen > low_wavelen) {
        f = f / factor;
      } else if (wavelen >= high_wavelen) {  // medium frequencies: blend the two
        const double smooth = (old_ctx / wavelen - low) / (high - low);
        f = (1 - smooth) * f / factor + smooth * f;
      }
    }
    return inv;
  }
  PEFT_ERROR(c.source(), ": rope type \"", type,
             "\" is not supported (supported: default, linear, llama3); its positions would differ from transformers'");
}

std::pair<Tensor, Tensor> rope_cos_sin(const std::vector<double>& inv_freq, const Tensor& position_ids, DType dtype,
                                       Device device) {
  const int64_t B = position_ids.size(0), T = position_ids.size(1), half = static_cast<int64_t>(inv_freq.size());
  const auto pos = position_ids.to_vector<int64_t>();
  std::vector<float> c(static_cast<size_t>(B * T * 2 * half)), s(c.size());
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t i = 0; i < half; ++i) {
      // As transformers: F32 inv_freq times F32 position, cos / sin in F32.
      const float ang = static_cast<float>(inv_freq[static_cast<size_t>(i)]) * static_cast<float>(pos[static_cast<size_t>(bt)]);
      const size_t o = static_cast<size_t>(bt * 2 * half + i);
      c[o] = c[o + static_cast<size_t>(half)] = std::cos(ang);
      s[o] = s[o + static_cast<size_t>(half)] = std::sin(ang);
    }
  return {Tensor::from_vector(c, {B, T, 2 * half}).to(dtype).to(device),
          Tensor::from_vector(s, {B, T, 2 * half}).to(dtype).to(device)};
}

Tensor hf_activation(const std::string& name, const Tensor& x) {
  if (name == "silu" || name == "swish") return silu(x);
  if (name == "relu") return relu(x);
  if (name == "gelu") return gelu(x, "none");
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return gelu(x, "tanh");
  PEFT_ERROR("activation \"", name, "\" is not supported (silu, relu, gelu, gelu_new, gelu_pytorch_tanh)");
}

void check_activation(const HfConfig& c, const std::string& key, const std::string& v) {
  PEFT_CHECK(v == "silu" || v == "swish" || v == "relu" || v == "gelu" || v == "gelu_new" || v == "gelu_pytorch_tanh",
             c.source(), ": ", key, " \"", v, "\" is not supported (silu, relu, gelu, gelu_new, gelu_pytorch_tanh)");
}

}  // namespace peft::nn::hf
