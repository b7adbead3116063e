// LSTM with PyTorch's parameter names (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ...)
// and initialisation U(±1/√hidden).
#pragma once
#include <optional>

#include "core/ops.h"
#include "layers/module.h"

namespace peft::nn {

class LSTM : public Module {
 public:
  PEFT_MODULE_CLONE(LSTM)
  LSTM(int64_t input_size, int64_t hidden_size, int64_t num_layers = 1, bool bias = true, bool batch_first = false,
       DType dtype = DType::F32);
  std::string type_name() const override { return "LSTM"; }
  // Returns only the output sequence.
  Tensor forward(const Tensor& x) override { return forward_with_state(x).output; }
  // Output and (h_n, c_n), optionally from initial states (num_layers, batch, hidden).
  LSTMResult forward_with_state(const Tensor& x, const std::optional<LSTMState>& hx = std::nullopt);
  std::string extra_repr() const override;
  int64_t input_size() const { return input_; }
  int64_t hidden_size() const { return hidden_; }
  int64_t num_layers() const { return layers_; }
  bool batch_first() const { return batch_first_; }
  bool has_bias() const { return bias_; }
  // Parameters in the flat order the lstm op expects.
  std::vector<Tensor> flat_weights() const;

 private:
  int64_t input_, hidden_, layers_;
  bool bias_, batch_first_;
};

}  // namespace peft::nn
