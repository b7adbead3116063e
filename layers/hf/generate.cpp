#include "layers/hf/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/random.h"

namespace peft::nn::hf {

namespace {

// Next token of one row's logits (V, F64 copy): argmax, or a draw after transformers' warpers
// (temperature, then top-k, then top-p on the sorted probabilities, keeping at least one token).
int64_t pick(std::vector<double> logits, const GenerationConfig& c, Generator& gen) {
  const int64_t V = static_cast<int64_t>(logits.size());
  if (!c.do_sample) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  for (auto& l : logits) l /= c.temperature;
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  int64_t keep = c.top_k > 0 ? std::min(c.top_k, V) : V;
  const double mx = logits[static_cast<size_t>(order[0])];
  std::vector<double> p(static_cast<size_t>(keep));
  double z = 0;
  for (int64_t i = 0; i < keep; ++i) z += p[static_cast<size_t>(i)] = std::exp(logits[static_cast<size_t>(order[i])] - mx);
  if (c.top_p < 1.0) {  // smallest prefix whose mass reaches top_p (transformers removes the tail beyond it)
    double cum = 0;
    int64_t n = 0;
    while (n < keep) {
      cum += p[static_cast<size_t>(n++)] / z;
      if (cum >= c.top_p) break;
    }
    keep = std::max<int64_t>(n, 1);
    z = std::accumulate(p.begin(), p.begin() + keep, 0.0);
  }
  double u = gen.uniform() * z;
  for (int64_t i = 0; i < keep; ++i) {
    u -= p[static_cast<size_t>(i)];
    if (u < 0) return order[static_cast<size_t>(i)];
  }
  return order[static_cast<size_t>(keep - 1)];
}

// One step for every row: the next token from its logits (B, V) — pad_token_id once the row has
// met eos — appended to rows; true when every row is done.
bool append_next_tokens(const Tensor& logits, const GenerationConfig& c, Generator& gen, std::vector<bool>& done,
                        std::vector<std::vector<int64_t>>& rows) {
  const auto all = logits.to_vector<double>();
  const int64_t V = logits.size(1);
  for (size_t b = 0; b < rows.size(); ++b) {
    int64_t tok = c.pad_token_id;
    if (!done[b]) {
      const auto row = all.begin() + static_cast<std::ptrdiff_t>(b) * V;
      tok = pick(std::vector<double>(row, row + V), c, gen);
      if (c.eos_token_id && tok == *c.eos_token_id) done[b] = true;
    }
    rows[b].push_back(tok);
  }
  return std::all_of(done.begin(), done.end(), [](bool d) { return d; });
}

void check_generate_args(const Tensor& input_ids, const GenerationConfig& c) {
  PEFT_CHECK(c.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got ", c.max_new_tokens);
  if (c.do_sample) {
    PEFT_CHECK(c.temperature > 0 && std::isfinite(c.temperature), "generate: temperature must be > 0, got ", c.temperature);
    PEFT_CHECK(c.top_k >= 0, "generate: top_k must be >= 0, got ", c.top_k);
    PEFT_CHECK(c.top_p > 0 && c.top_p <= 1, "generate: top_p must be in (0, 1], got ", c.top_p);
  }
  PEFT_CHECK(input_ids.defined() && input_ids.dtype() == DType::I64 && input_ids.dim() == 2 && input_ids.size(1) > 0,
             "generate: input_ids must be I64 (batch, seq) with seq > 0");
}

}  // namespace

Tensor generate(CausalLM& model, const Tensor& input_ids, const Tensor& attention_mask, const GenerationConfig& c,
                Generator* gen_in) {
  check_generate_args(input_ids, c);
  Generator& gen = gen_in ? *gen_in : default_generator();
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const Device dev = model.parameters().empty() ? Device::cpu() : model.parameters().front().device();
  const std::vector<int64_t> ids = input_ids.to_vector<int64_t>();
  std::vector<int64_t> mask(static_cast<size_t>(B * T), 1);
  if (attention_mask.defined()) {
    PEFT_CHECK(attention_mask.shape() == input_ids.shape() && attention_mask.dtype() == DType::I64,
               "generate: attention_mask must be I64 with input_ids' shape");
    mask = attention_mask.to_vector<int64_t>();
  }
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  KvCache cache;
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(B)), mrows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    rows[b].assign(ids.begin() + b * T, ids.begin() + (b + 1) * T);
    mrows[b].assign(mask.begin() + b * T, mask.begin() + (b + 1) * T);
  }
  std::vector<bool> done(static_cast<size_t>(B), false);
  auto flat = [&](const std::vector<std::vector<int64_t>>& r, int64_t from) {
    std::vector<int64_t> v;
    for (const auto& row : r) v.insert(v.end(), row.begin() + from, row.end());
    return v;
  };
  try {
    for (int64_t step = 0; step < c.max_new_tokens; ++step) {
      const int64_t len = static_cast<int64_t>(rows[0].size()), past = cache.length(), n = len - past;
      const Tensor full_mask = Tensor::from_vector(flat(mrows, 0), {B, len});
      const Tensor pos = positions_from_mask(full_mask).slice(1, past, len).contiguous();
      const Tensor step_ids = Tensor::from_vector(flat(rows, past), {B, n}).to(dev);
      const Tensor logits = model.logits_step(step_ids, full_mask.to(dev), pos, cache).select(1, n - 1);
      const bool finished = append_next_tokens(logits, c, gen, done, rows);
      for (auto& m : mrows) m.push_back(1);
      if (finished) break;
    }
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  const int64_t out_len = static_cast<int64_t>(rows[0].size());
  return Tensor::from_vector(flat(rows, 0), {B, out_len});
}

Tensor generate(T5ForConditionalGeneration& model, const Tensor& input_ids, const Tensor& attention_mask,
                const GenerationConfig& c, Generator* gen_in) {
  check_generate_args(input_ids, c);
  Generator& gen = gen_in ? *gen_in : default_generator();
  const int64_t B = input_ids.size(0);
  const Device dev = model.parameters().empty() ? Device::cpu() : model.parameters().front().device();
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(B), {model.dims().decoder_start_token_id});
  std::vector<bool> done(static_cast<size_t>(B), false);
  try {
    const Tensor mask = attention_mask.defined() ? attention_mask.to(dev) : Tensor();
    const Tensor enc = model.encode(input_ids.to(dev), mask);
    for (int64_t step = 0; step < c.max_new_tokens; ++step) {
      const int64_t len = static_cast<int64_t>(rows[0].size());
      std::vector<int64_t> flat;
      for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
      const Tensor logits = model.decode(Tensor::from_vector(flat, {B, len}).to(dev), enc, mask).select(1, len - 1);
      if (append_next_tokens(logits, c, gen, done, rows)) break;
    }
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  std::vector<int64_t> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return Tensor::from_vector(flat, {B, static_cast<int64_t>(rows[0].size())});
}

}  // namespace peft::nn::hf
