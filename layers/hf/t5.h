// layers/hf/t5.h — transformers' T5ForConditionalGeneration for model_type "t5" and "mt5" (mT5,
// mt0): encoder and decoder stacks with T5's bucketed relative position bias (bidirectional in
// the encoder, causal in the decoder, computed by block 0 and shared by every block), unscaled
// dot-product attention, T5LayerNorm (RMS, no bias), ReLU or gated-GELU feed-forward,
// cross-attention, and transformers 5.25's output head rules:
//   - "t5": decoder output scaled by d_model^-0.5 unless config.json says tie_word_embeddings:
//     false (T5 v1.0 vs v1.1 / flan-t5); "mt5": never scaled;
//   - lm_head is `shared` unless config.json says tie_word_embeddings: false, as the published
//     checkpoints of v1.1 / mT5 / mt0 hold their own lm_head.weight (transformers 5 forces the
//     flag to true in the config class and unties on loading such a checkpoint).
// Names are transformers' (encoder.block.0.layer.0.SelfAttention.q.weight, shared.weight,
// decoder.block.1.layer.1.EncDecAttention.v.weight, ...), so checkpoints and PEFT adapters load
// by key. Dropout (dropout_rate) applies in training mode to the same places as transformers,
// attention probabilities included.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "layers/hf/pretrained.h"

namespace peft::nn::hf {

// The sizes every T5 module needs, read once from config.json with T5Config's / MT5Config's
// defaults.
struct T5Dims {
  std::string prefix;  // "T5", "MT5"
  int64_t d_model = 0, d_kv = 0, d_ff = 0, heads = 0, layers = 0, decoder_layers = 0, vocab = 0;
  int64_t buckets = 32, max_distance = 128;
  double eps = 1e-6, dropout = 0.1, init_factor = 1.0;
  bool gated = false, tie = true, scale_output = false;
  std::string act = "relu";
  int64_t decoder_start_token_id = 0, pad_token_id = 0;
  static T5Dims from(const HfConfig& c);
};

class T5Attention : public Module {
 public:
  PEFT_MODULE_CLONE(T5Attention)
  T5Attention(const T5Dims& d, bool has_relative_attention_bias);
  std::string type_name() const override { return prefix_ + "Attention"; }
  // Attention of x (B, Tq, d_model) over kv (B, Tk, d_model; x itself for self-attention) with
  // `bias` added to the unscaled scores (broadcastable to (B, H, Tq, Tk): position bias plus the
  // additive mask). o-projected output (B, Tq, d_model).
  Tensor attend(const Tensor& x, const Tensor& kv, const Tensor& bias);
  // The position bias (1, H, Tq, Tk) for queries at positions past..past+Tq-1 over keys 0..Tk-1,
  // through the relative_attention_bias embedding (only block 0's attention has one).
  Tensor compute_bias(int64_t Tq, int64_t Tk, int64_t past, bool bidirectional, Device device);

 private:
  std::string prefix_;
  int64_t heads_, d_kv_, buckets_, max_distance_;
  double dropout_;
};

// T5's bucket of a relative position (memory - query), as transformers' _relative_position_bucket
// (the logarithmic part in F32, as torch computes it).
int64_t t5_relative_position_bucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                                    int64_t max_distance);

class T5Stack : public Module {
 public:
  PEFT_MODULE_CLONE(T5Stack)
  T5Stack(const T5Dims& d, bool is_decoder, const Tensor& shared_embedding);
  std::string type_name() const override { return prefix_ + "Stack"; }
  // Hidden states (B, T, d_model) after the final norm. mask (B, T) I64 or undefined. Decoder:
  // encoder_hidden (B, S, d_model) and its mask (B, S) (undefined: none).
  Tensor run(const Tensor& ids, const Tensor& mask, const Tensor& encoder_hidden = Tensor(),
             const Tensor& encoder_mask = Tensor());

 private:
  std::string prefix_;
  bool is_decoder_;
};

class T5ForConditionalGeneration : public PretrainedModel {
 public:
  PEFT_MODULE_CLONE(T5ForConditionalGeneration)
  // config.json's model_type must be "t5" or "mt5". Weights: PyTorch's default layer init; call
  // init_weights() for transformers' or load a checkpoint (hf::seq2seq_from_pretrained).
  explicit T5ForConditionalGeneration(const HfConfig& config);
  std::string type_name() const override { return dims_.prefix + "ForConditionalGeneration"; }
  bool is_encoder_decoder() const override { return true; }
  std::vector<std::pair<std::string, std::string>> tied_weights() const override;
  void init_weights() override;
  const T5Dims& dims() const { return dims_; }

  // Encoder output (B, S, d_model) of input_ids (B, S) I64; attention_mask (B, S) I64, 1 for
  // tokens, 0 for padding (undefined: none).
  Tensor encode(const Tensor& input_ids, const Tensor& attention_mask = Tensor());
  // logits (B, T, V) of decoder_input_ids (B, T) given the encoder output and its mask;
  // decoder_attention_mask (B, T) I64 or undefined (causal only).
  Tensor decode(const Tensor& decoder_input_ids, const Tensor& encoder_hidden, const Tensor& attention_mask = Tensor(),
                const Tensor& decoder_attention_mask = Tensor());
  // encode + decode: transformers' model(input_ids, attention_mask, decoder_input_ids).logits.
  Tensor logits(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& decoder_input_ids,
                const Tensor& decoder_attention_mask = Tensor());
  // transformers' _shift_right: labels (B, T) I64 (-100 ignored) → decoder_input_ids starting with
  // decoder_start_token_id, -100 replaced by pad_token_id.
  Tensor shift_right(const Tensor& labels) const;
  // An encoder-decoder model has no single-input forward; refused with a pointer to logits().
  Tensor forward(const Tensor& x) override;

 private:
  void check_ids(const Tensor& ids, const Tensor& mask, const char* what) const;
  T5Dims dims_;
};

}  // namespace peft::nn::hf
