// hf_lora train (train.cpp, train_seq2seq.cpp): options and entry point, the text → blocks step
// on its own, and the loop both trainers share.
#pragma once
#include <peft/peft.h>

#include <functional>
#include <string>
#include <vector>

namespace hf_lora {

struct TrainOptions {
  std::string model, data, out;
  int64_t r = 8;  // LoraConfig's defaults
  double lora_alpha = 8, lora_dropout = 0;
  int64_t block_size = 128, batch_size = 4, epochs = 1, max_steps = 0;  // max_steps > 0 overrides epochs
  int64_t max_source_length = 1024, max_target_length = 128;            // T5: run_translation.py's defaults
  double lr = 2e-4;
  uint64_t seed = 0;
  int64_t log_every = 10;
  peft::Device device = peft::Device::cpu();
  bool bf16 = false;
};

// run_clm's blocks from `text` (see train.cpp); throws when the text gives less than one block.
std::vector<std::vector<int64_t>> training_blocks(const peft::io::Tokenizer& tok, const std::string& text,
                                                  int64_t block_size);

int run_train(const TrainOptions& options);

// The model's LoadOptions (--device, --bf16 → BF16, refused on the CPU) and the LoraConfig
// (--r, --lora-alpha, --lora-dropout; PEFT's default targets) of `task_type`: both trainers'.
peft::nn::hf::LoadOptions load_options(const TrainOptions& options);
peft::LoraConfig lora_config(const TrainOptions& options, const std::string& task_type);

// The loss of examples order[first, last) as one batch, with gradients unless NoGradGuard: the
// mean over its `terms` loss terms (the tokens whose label counts, -100 labels excluded).
struct BatchLossResult {
  peft::Tensor loss;
  int64_t terms = 0;
};
using BatchLoss = std::function<BatchLossResult(const std::vector<size_t>& order, size_t first, size_t last)>;

// AdamW (weight decay 0, constant lr) over `examples` shuffled examples for opt.epochs (or
// opt.max_steps) in batches of opt.batch_size, a progress line every opt.log_every steps giving
// `unit`s per second (`units_per_example` of them in each example).
// With `dp` (data-parallel under mpirun) every rank draws the same permutation (opt.seed) and
// runs its shard (dist::shard) of each global batch of opt.batch_size examples; the gradients are
// weighted by each rank's share of the batch's loss terms, so they are those of the global
// batch's mean loss, as in one process; only rank 0 prints.
void train_loop(peft::PeftModel& pm, size_t examples, const TrainOptions& opt, const BatchLoss& loss,
                int64_t units_per_example, const char* unit, peft::DataParallel* dp = nullptr);

// Σ over ranks of `local` (a partial sum of an evaluation split by dist::shard); `local` itself
// in one process.
double sum_over_ranks(double local);

// T5 / mT5 (train_seq2seq.cpp): --data is a TSV file of "source<TAB>target" lines.
int run_train_seq2seq(const TrainOptions& options);

}  // namespace hf_lora
