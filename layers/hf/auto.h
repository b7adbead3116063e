// layers/hf/auto.h — transformers' AutoModelForCausalLM / AutoModelForSeq2SeqLM for the
// architectures here: the class chosen by config.json's model_type, weights read from a
// save_pretrained folder (model.safetensors, or model.safetensors.index.json and its shards) by
// transformers' names.
//
//   auto lm = peft::nn::hf::from_pretrained("opt-350m/");              // F32 on the CPU
//   Tensor logits = lm->logits(input_ids, attention_mask);            // (B, T, V)
//   auto pm = peft::get_peft_model(lm, cfg);  // no target_modules: PEFT's defaults for lm->model_type()
//   auto t5 = peft::nn::hf::seq2seq_from_pretrained("mt0-small/");     // T5 / mT5
//   Tensor l = t5->logits(input_ids, attention_mask, decoder_input_ids);
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layers/hf/causal_lm.h"
#include "layers/hf/t5.h"

namespace peft::nn::hf {

// model_type values with a class here.
std::vector<std::string> supported_model_types();
// "t5" and "mt5": encoder-decoder models (seq2seq_*), the rest decoders (causal_lm_* / from_pretrained).
bool is_encoder_decoder_model_type(const std::string& model_type);

// A model built from a config alone, weights as transformers initialises them (init_weights);
// under MetaDeviceGuard, shapes only. model_from_config takes any supported model_type.
std::shared_ptr<CausalLM> causal_lm_from_config(const HfConfig& config);
std::shared_ptr<T5ForConditionalGeneration> seq2seq_lm_from_config(const HfConfig& config);
std::shared_ptr<PretrainedModel> model_from_config(const HfConfig& config);

struct LoadOptions {
  Device device = Device::cpu();
  // The parameters' dtype; default F32 whatever the checkpoint holds (transformers' default
  // without torch_dtype). BF16 / F16 math runs on CUDA only.
  DType dtype = DType::F32;
};

// config.json + weights from `dir`. Every parameter must be in the checkpoint (a tied alias may
// be absent); a key the model does not have is an error (rotary inv_freq buffers of old
// checkpoints are skipped). Shapes are checked before anything is copied. The model is built on the
// meta device and each parameter takes its checkpoint value converted straight to options.dtype
// and options.device (no random initialisation; the peak is the model in that dtype plus one tensor).
// from_pretrained: a decoder model (an encoder-decoder folder is refused, naming seq2seq_from_pretrained);
// seq2seq_from_pretrained: a T5 / mT5 model.
std::shared_ptr<CausalLM> from_pretrained(const std::string& dir, const LoadOptions& options = {});
std::shared_ptr<T5ForConditionalGeneration> seq2seq_from_pretrained(const std::string& dir,
                                                                    const LoadOptions& options = {});

// Loads a checkpoint folder's weights into an existing model (same rules; nothing changes on error).
void load_pretrained_weights(PretrainedModel& model, const std::string& dir);

// Writes config.json and model.safetensors (tied aliases written once, under their source name)
// as transformers' save_pretrained does, atomically per file.
void save_pretrained(const PretrainedModel& model, const std::string& dir);

}  // namespace peft::nn::hf
