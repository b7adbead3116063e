// hf_lora train: LoRA fine-tuning of a transformers decoder on a text file, saving a PEFT adapter.
// The text becomes training blocks as transformers' run_clm.py makes them from a text file (its
// default keep_linebreaks): one example per line, the '\n' kept, each tokenized with the special
// tokens (tokenizer.json of the model folder),
// all ids concatenated and cut into blocks of --block-size tokens, the remainder dropped; the
// labels are the inputs (next-token cross-entropy). Training is AdamW (weight decay 0, as the
// Trainer's default) at a constant learning rate over shuffled blocks (--seed).
// Under `mpirun -np K` (a build with MPI) it trains data-parallel: --batch-size stays the global
// batch, each rank runs its shard of it (peft::DataParallel, gradients weighted by each rank's
// share of the batch's label tokens), the evaluations are split over the ranks, rank 0 prints and
// saves; the adapter equals the one-process run's within 1e-5.
#include "train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>

using namespace peft;
namespace hf = peft::nn::hf;

namespace hf_lora {
namespace {

// run_clm's examples: the lines of the file, each with its '\n' (Python's readlines; a blank
// line is "\n", a last line without a newline stays as it is).
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
    lines.push_back(text.substr(start, nl + 1 - start));
    start = nl + 1;
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

// Mean next-token cross-entropy of blocks [first, last) as one batch (F32 math), over its
// b·(t-1) predicted tokens.
BatchLossResult batch_loss(hf::CausalLM& lm, const std::vector<std::vector<int64_t>>& blocks,
                           const std::vector<size_t>& order, size_t first, size_t last, const Device& device) {
  const int64_t b = static_cast<int64_t>(last - first), t = static_cast<int64_t>(blocks[0].size());
  std::vector<int64_t> ids;
  ids.reserve(static_cast<size_t>(b * t));
  for (size_t i = first; i < last; ++i) ids.insert(ids.end(), blocks[order[i]].begin(), blocks[order[i]].end());
  Tensor x = Tensor::from_vector(ids, {b, t}).to(device);
  Tensor logits = lm.logits(x);
  return {cross_entropy(logits.slice(1, 0, t - 1).reshape({b * (t - 1), logits.size(2)}).to(DType::F32),
                        x.slice(1, 1, t).reshape({b * (t - 1)})),
          b * (t - 1)};
}

// The mean over blocks of each block's loss, in batches of `batch`; data-parallel, each rank
// evaluates its shard of the blocks (every block has the same number of tokens, so the mean over
// blocks is the mean over tokens either way).
double mean_loss(hf::CausalLM& lm, const std::vector<std::vector<int64_t>>& blocks, int64_t batch, const Device& device) {
  NoGradGuard no_grad;
  std::vector<size_t> order(blocks.size());
  std::iota(order.begin(), order.end(), size_t{0});
  dist::Communicator& comm = dist::world();
  const auto [lo, hi] = dist::shard(static_cast<int64_t>(blocks.size()), comm.rank(), comm.size());
  double sum = 0;
  for (size_t i = static_cast<size_t>(lo); i < static_cast<size_t>(hi); i += static_cast<size_t>(batch)) {
    const size_t end = std::min(static_cast<size_t>(hi), i + static_cast<size_t>(batch));
    sum += batch_loss(lm, blocks, order, i, end, device).loss.item() * static_cast<double>(end - i);
  }
  return sum_over_ranks(sum) / static_cast<double>(blocks.size());
}

}  // namespace

std::vector<std::vector<int64_t>> training_blocks(const io::Tokenizer& tok, const std::string& text, int64_t block_size) {
  PEFT_CHECK(block_size >= 2, "--block-size must be at least 2, got ", block_size);
  std::vector<int64_t> all;
  for (const std::string& line : lines_of(text)) {
    const std::vector<int64_t> ids = tok.encode(line);
    all.insert(all.end(), ids.begin(), ids.end());
  }
  PEFT_CHECK(static_cast<int64_t>(all.size()) >= block_size, "the data gives ", all.size(),
             " tokens, fewer than one block of ", block_size, " (use a smaller --block-size or more text)");
  std::vector<std::vector<int64_t>> blocks;
  for (size_t i = 0; i + static_cast<size_t>(block_size) <= all.size(); i += static_cast<size_t>(block_size))
    blocks.emplace_back(all.begin() + static_cast<std::ptrdiff_t>(i),
                        all.begin() + static_cast<std::ptrdiff_t>(i) + block_size);
  return blocks;
}

hf::LoadOptions load_options(const TrainOptions& opt) {
  hf::LoadOptions load;
  load.device = opt.device;
  if (opt.bf16) {
    PEFT_CHECK(!opt.device.is_cpu(), "--bf16 needs --device cuda (BF16 math runs on CUDA only)");
    load.dtype = DType::BF16;
  }
  return load;
}

LoraConfig lora_config(const TrainOptions& opt, const std::string& task_type) {
  LoraConfig cfg;
  cfg.task_type = task_type;
  cfg.r = opt.r;
  cfg.lora_alpha = opt.lora_alpha;
  cfg.lora_dropout = opt.lora_dropout;
  return cfg;
}

double sum_over_ranks(double local) {
  dist::Communicator& comm = dist::world();
  if (comm.size() == 1) return local;
  Tensor t = Tensor::from_vector(std::vector<double>{local}, {1});
  comm.all_reduce_(t, dist::ReduceOp::Sum);
  return t.item();
}

void train_loop(PeftModel& pm, size_t examples, const TrainOptions& opt, const BatchLoss& batch_loss,
                int64_t units_per_example, const char* unit, DataParallel* dp) {
  const int64_t steps_per_epoch = (static_cast<int64_t>(examples) + opt.batch_size - 1) / opt.batch_size;
  const int64_t total = opt.max_steps > 0 ? opt.max_steps : opt.epochs * steps_per_epoch;
  optim::AdamW adamw(pm.trainable_parameters(), {.lr = opt.lr, .weight_decay = 0.0});
  Generator shuffle(opt.seed);  // the same on every rank: one permutation, sharded
  std::vector<size_t> order(examples);
  const bool lead = !dp || dp->comm().rank() == 0;
  pm.train();
  const auto t0 = std::chrono::steady_clock::now();
  double window_loss = 0;
  int64_t window = 0, done = 0;
  for (int64_t step = 0; step < total; ++step) {
    const size_t pos = static_cast<size_t>((step % steps_per_epoch) * opt.batch_size);
    if (pos == 0) {  // a new epoch: a fresh permutation (Fisher-Yates)
      std::iota(order.begin(), order.end(), size_t{0});
      for (size_t i = order.size(); i > 1; --i)
        std::swap(order[i - 1], order[static_cast<size_t>(shuffle.next_u64() % i)]);
    }
    const size_t end = std::min(examples, pos + static_cast<size_t>(opt.batch_size));
    const int64_t global = static_cast<int64_t>(end - pos);
    const auto [b, e] = dp ? dist::shard(global, dp->comm().rank(), dp->comm().size()) : std::pair<int64_t, int64_t>{0, global};
    adamw.zero_grad();
    double l = 0;
    int64_t terms = 0;
    if (e > b) {  // more ranks than examples in this batch: this rank adds nothing
      BatchLossResult r = batch_loss(order, pos + static_cast<size_t>(b), pos + static_cast<size_t>(e));
      r.loss.backward();
      l = r.loss.item();
      terms = r.terms;
    }
    if (dp) {
      // The loss is a mean over the batch's loss terms (label tokens, -100 excluded), so each
      // rank's mean counts by its share of those, not of the rows.
      int64_t all_terms = 0;
      for (uint64_t n : dp->comm().all_gather(static_cast<uint64_t>(terms))) all_terms += static_cast<int64_t>(n);
      PEFT_CHECK(all_terms > 0, "step ", step + 1, ": the batch has no label token to learn from");
      dp->sync_gradients(terms, all_terms);
      l = dp->reduce_mean(l, terms, all_terms);
    }
    adamw.step();
    window_loss += l;
    ++window;
    done += global;
    if ((step + 1) % opt.log_every == 0 || step + 1 == total) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (lead)
        std::printf("step %lld/%lld  epoch %.2f  loss %.4f  %.0f %s/s\n", static_cast<long long>(step + 1),
                    static_cast<long long>(total), static_cast<double>(step + 1) / static_cast<double>(steps_per_epoch),
                    window_loss / static_cast<double>(window),
                    static_cast<double>(done * units_per_example) / secs, unit);
      std::fflush(stdout);
      window_loss = 0;
      window = 0;
    }
  }
  if (dp && lead)
    std::printf("data-parallel: %lld bytes of gradients all-reduced per step, %.3f ms per step in all-reduce\n",
                static_cast<long long>(dp->bytes_per_step()),
                1e3 * dp->stats().seconds / static_cast<double>(std::max<int64_t>(dp->stats().steps, 1)));
}

int run_train(const TrainOptions& opt) {
  if (hf::is_encoder_decoder_model_type(hf::HfConfig::from_file(opt.model).model_type())) return run_train_seq2seq(opt);
  std::ifstream in(opt.data, std::ios::binary);
  PEFT_CHECK(in.good(), "cannot open --data '", opt.data, "'");
  std::ostringstream text;
  text << in.rdbuf();
  const io::Tokenizer tok = io::Tokenizer::from_pretrained(opt.model);

  auto lm = hf::from_pretrained(opt.model, load_options(opt));
  PEFT_CHECK(tok.vocab_size() <= lm->vocab_size(), "the tokenizer has ", tok.vocab_size(),
             " tokens but the model's vocabulary only ", lm->vocab_size());
  const std::vector<std::vector<int64_t>> blocks = training_blocks(tok, text.str(), opt.block_size);

  auto pm = get_peft_model(lm, lora_config(opt, "CAUSAL_LM"));
  dist::Communicator& comm = dist::world();
  const bool lead = comm.rank() == 0;  // rank 0 prints and writes; every rank trains
  std::optional<DataParallel> dp;
  if (comm.size() > 1) dp.emplace(*pm, comm);  // rank 0's initial adapter on every rank
  const auto [trainable, all] = pm->get_nb_trainable_parameters();
  if (lead) {
    if (dp) std::printf("data-parallel: world size %d (%s)\n", comm.size(), comm.backend().c_str());
    std::printf("%zu blocks of %lld tokens; trainable params %lld of %lld\n", blocks.size(),
                static_cast<long long>(opt.block_size), static_cast<long long>(trainable), static_cast<long long>(all));
  }
  pm->eval();
  const double initial = mean_loss(*lm, blocks, opt.batch_size, opt.device);
  if (lead) std::printf("initial loss %.6f\n", initial);
  std::fflush(stdout);

  train_loop(*pm, blocks.size(), opt,
             [&](const std::vector<size_t>& order, size_t first, size_t last) {
               return batch_loss(*lm, blocks, order, first, last, opt.device);
             },
             opt.block_size, "tokens", dp ? &*dp : nullptr);
  pm->eval();
  const double final_loss = mean_loss(*lm, blocks, opt.batch_size, opt.device);
  if (lead) {
    std::printf("final loss %.6f\n", final_loss);
    pm->save_pretrained(opt.out);
    std::printf("saved the adapter to %s\n", opt.out.c_str());
  }
  comm.barrier();  // no rank leaves before rank 0 has saved (an error there still ends them all)
  return 0;
}

}  // namespace hf_lora
