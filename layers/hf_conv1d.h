// Conv1D: transformers' GPT-2 projection (transformers.pytorch_utils.Conv1D), despite its name a
// Linear with the weight stored transposed. GPT-2 checkpoints and PEFT adapters for them name it
// so, and LoRA treats it as a Linear with fan_in_fan_out=True (adapters/lora_conv1d.h).
#pragma once
#include "layers/module.h"

namespace peft::nn {

// y = x·W + b. weight (nx, nf) = (in, out), bias (nf). The constructor takes (nf, nx), output
// size first, as transformers does. Initialised as transformers' own init: W ~ N(0, 0.02²), b = 0.
class Conv1D : public Module {
 public:
  PEFT_MODULE_CLONE(Conv1D)
  Conv1D(int64_t nf, int64_t nx, DType dtype = DType::F32);
  std::string type_name() const override { return "Conv1D"; }
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;  // "nf=6, nx=4" (transformers' __repr__)
  int64_t in_features() const { return nx_; }
  int64_t out_features() const { return nf_; }
  Tensor& weight() { return param("weight"); }
  Tensor bias() const { return param("bias"); }

 private:
  int64_t nf_, nx_;
};

}  // namespace peft::nn
