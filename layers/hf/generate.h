// layers/hf/generate.h — transformers' generate() for the decoder models here: greedy search
// or sampling (temperature, top-k, top-p, in transformers' order), with the KV cache, left
// padding (positions cumsum(mask) − 1, as generate makes them) and stopping at eos_token_id
// (finished rows continue with pad_token_id, as transformers pads them); and for T5 / mT5 the
// encoder-decoder form: the encoder run once, the decoder from decoder_start_token_id.
#pragma once
#include <optional>

#include "layers/hf/causal_lm.h"
#include "layers/hf/t5.h"

namespace peft {
class Generator;
}

namespace peft::nn::hf {

struct GenerationConfig {
  int64_t max_new_tokens = 20;
  bool do_sample = false;     // false: greedy (argmax, first maximum)
  double temperature = 1.0;   // > 0; sampling only
  int64_t top_k = 50;         // 0: off; sampling only
  double top_p = 1.0;         // in (0, 1]; 1: off; sampling only
  std::optional<int64_t> eos_token_id;
  int64_t pad_token_id = 0;   // written after a row's eos
};

// input_ids (B, T) I64; attention_mask (B, T) or undefined. Returns (B, T + n) I64 on the CPU,
// n ≤ max_new_tokens (fewer when every row reached eos). Runs in eval mode without gradients;
// sampling draws from `gen` (default: the global generator).
Tensor generate(CausalLM& model, const Tensor& input_ids, const Tensor& attention_mask, const GenerationConfig& config,
                Generator* gen = nullptr);

// T5 / mT5: input_ids (B, S) with attention_mask (B, S) (right padding) or undefined. Returns the
// decoder's ids (B, 1 + n) I64 on the CPU, starting with decoder_start_token_id, as transformers'
// generate does for encoder-decoder models. The encoder runs once; the decoder re-runs over its
// whole prefix at each step (no self-attention cache yet: O(n²) decoder work, fine for short
// outputs).
Tensor generate(T5ForConditionalGeneration& model, const Tensor& input_ids, const Tensor& attention_mask,
                const GenerationConfig& config, Generator* gen = nullptr);

}  // namespace peft::nn::hf
