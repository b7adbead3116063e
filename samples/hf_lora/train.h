// hf_lora train (train.cpp): options and entry point, and the text → blocks step on its own.
#pragma once
#include <peft/peft.h>

#include <string>
#include <vector>

namespace hf_lora {

struct TrainOptions {
  std::string model, data, out;
  int64_t r = 8;  // LoraConfig's defaults
  double lora_alpha = 8, lora_dropout = 0;
  int64_t block_size = 128, batch_size = 4, epochs = 1, max_steps = 0;  // max_steps > 0 overrides epochs
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

}  // namespace hf_lora
