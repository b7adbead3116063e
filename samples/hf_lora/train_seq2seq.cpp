// hf_lora train on a T5 / mT5 folder: LoRA on source → target pairs, as transformers'
// run_translation.py / run_summarization.py prepare them. --data is a TSV file, one
// "source<TAB>target" pair per line (blank lines skipped; a line without a tab is an error naming
// it). Sources and targets are tokenized with the special tokens (T5's "$A </s>"), truncated to
// --max-source-length / --max-target-length keeping the closing </s> (the tokenizer's truncation
// budgets for it); a batch pads sources with pad_token_id (attention_mask 0) and labels with -100
// (ignored by the loss), and the decoder reads shift_right(labels) — transformers' T5 loss, the
// mean cross-entropy over the batch's label tokens. The initial / final loss lines are the mean
// over examples of each example's own loss (no padding involved), the number transformers gives
// for model(input_ids, labels=labels).loss one example at a time.
// Data-parallel under mpirun (train_loop): the loss being a mean over the global batch's label
// tokens, each rank's gradients count by its share of those tokens, not of the pairs.
#include <cstdio>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>

#include "train.h"

using namespace peft;
namespace hf = peft::nn::hf;

namespace hf_lora {
namespace {

struct Pair {
  std::vector<int64_t> source, target;
};

// ids with the special tokens, cut to `max` keeping the last token (T5's closing </s>).
std::vector<int64_t> encode_truncated(const io::Tokenizer& tok, const std::string& text, int64_t max) {
  std::vector<int64_t> ids = tok.encode(text);
  if (static_cast<int64_t>(ids.size()) > max) {
    const int64_t last = ids.back();
    ids.resize(static_cast<size_t>(max));
    ids.back() = last;
  }
  return ids;
}

std::vector<Pair> read_pairs(const io::Tokenizer& tok, const TrainOptions& opt) {
  PEFT_CHECK(opt.max_source_length >= 1 && opt.max_target_length >= 1,
             "--max-source-length and --max-target-length must be at least 1");
  std::ifstream in(opt.data, std::ios::binary);
  PEFT_CHECK(in.good(), "cannot open --data '", opt.data, "'");
  std::vector<Pair> pairs;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const size_t tab = line.find('\t');
    PEFT_CHECK(tab != std::string::npos, opt.data, ":", n,
               ": expected \"source<TAB>target\" (a T5 model trains on pairs), got a line without a tab");
    pairs.push_back({encode_truncated(tok, line.substr(0, tab), opt.max_source_length),
                     encode_truncated(tok, line.substr(tab + 1), opt.max_target_length)});
  }
  PEFT_CHECK(!pairs.empty(), opt.data, ": no source<TAB>target pairs");
  return pairs;
}

// The batch of pairs order[first, last): input_ids / attention_mask right-padded, labels padded with -100.
BatchLossResult pair_loss(hf::T5ForConditionalGeneration& m, const std::vector<Pair>& pairs, const std::vector<size_t>& order,
                 size_t first, size_t last, const Device& device) {
  size_t S = 0, T = 0;
  for (size_t i = first; i < last; ++i) {
    S = std::max(S, pairs[order[i]].source.size());
    T = std::max(T, pairs[order[i]].target.size());
  }
  const int64_t B = static_cast<int64_t>(last - first);
  std::vector<int64_t> ids(static_cast<size_t>(B) * S, m.dims().pad_token_id), mask(ids.size(), 0),
      labels(static_cast<size_t>(B) * T, -100);
  for (size_t i = first; i < last; ++i) {
    const Pair& p = pairs[order[i]];
    const size_t row = i - first;
    for (size_t j = 0; j < p.source.size(); ++j) ids[row * S + j] = p.source[j], mask[row * S + j] = 1;
    for (size_t j = 0; j < p.target.size(); ++j) labels[row * T + j] = p.target[j];
  }
  const Tensor lab = Tensor::from_vector(labels, {B, static_cast<int64_t>(T)});
  const Tensor logits = m.logits(Tensor::from_vector(ids, {B, static_cast<int64_t>(S)}).to(device),
                                 Tensor::from_vector(mask, {B, static_cast<int64_t>(S)}).to(device),
                                 m.shift_right(lab).to(device));
  int64_t terms = 0;  // the label tokens the mean runs over (-100 padding excluded)
  for (size_t i = first; i < last; ++i) terms += static_cast<int64_t>(pairs[order[i]].target.size());
  return {cross_entropy(logits.reshape({B * static_cast<int64_t>(T), logits.size(2)}).to(DType::F32),
                        lab.reshape({B * static_cast<int64_t>(T)}).to(device)),
          terms};
}

double mean_example_loss(hf::T5ForConditionalGeneration& m, const std::vector<Pair>& pairs, const Device& device) {
  NoGradGuard no_grad;
  std::vector<size_t> order(pairs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Data-parallel: each rank evaluates its shard of the pairs.
  dist::Communicator& comm = dist::world();
  const auto [lo, hi] = dist::shard(static_cast<int64_t>(pairs.size()), comm.rank(), comm.size());
  double sum = 0;
  for (size_t i = static_cast<size_t>(lo); i < static_cast<size_t>(hi); ++i)
    sum += pair_loss(m, pairs, order, i, i + 1, device).loss.item();
  return sum_over_ranks(sum) / static_cast<double>(pairs.size());
}

}  // namespace

int run_train_seq2seq(const TrainOptions& opt) {
  const io::Tokenizer tok = io::Tokenizer::from_pretrained(opt.model);
  const hf::LoadOptions load = load_options(opt);  // --bf16 refused on the CPU before the data is read
  const std::vector<Pair> pairs = read_pairs(tok, opt);
  auto m = hf::seq2seq_from_pretrained(opt.model, load);
  PEFT_CHECK(tok.vocab_size() <= m->dims().vocab, "the tokenizer has ", tok.vocab_size(),
             " tokens but the model's vocabulary only ", m->dims().vocab);
  auto pm = get_peft_model(m, lora_config(opt, "SEQ_2_SEQ_LM"));
  dist::Communicator& comm = dist::world();
  const bool lead = comm.rank() == 0;  // rank 0 prints and writes; every rank trains
  std::optional<DataParallel> dp;
  if (comm.size() > 1) dp.emplace(*pm, comm);  // rank 0's initial adapter on every rank
  const auto [trainable, all] = pm->get_nb_trainable_parameters();
  if (lead) {
    if (dp) std::printf("data-parallel: world size %d (%s)\n", comm.size(), comm.backend().c_str());
    std::printf("%zu source/target pairs; trainable params %lld of %lld\n", pairs.size(),
                static_cast<long long>(trainable), static_cast<long long>(all));
  }
  pm->eval();
  const double initial = mean_example_loss(*m, pairs, opt.device);
  if (lead) std::printf("initial loss %.6f\n", initial);
  std::fflush(stdout);
  train_loop(*pm, pairs.size(), opt,
             [&](const std::vector<size_t>& order, size_t first, size_t last) {
               return pair_loss(*m, pairs, order, first, last, opt.device);
             },
             1, "examples", dp ? &*dp : nullptr);
  pm->eval();
  const double final_loss = mean_example_loss(*m, pairs, opt.device);
  if (lead) {
    std::printf("final loss %.6f\n", final_loss);
    pm->save_pretrained(opt.out);
    std::printf("saved the adapter to %s\n", opt.out.c_str());
  }
  comm.barrier();  // no rank leaves before rank 0 has saved (an error there still ends them all)
  return 0;
}

}  // namespace hf_lora
