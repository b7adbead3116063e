#include "layers/lstm.h"

#include <cmath>

#include "layers/init.h"

namespace peft::nn {

LSTM::LSTM(int64_t input_size, int64_t hidden_size, int64_t num_layers, bool bias, bool batch_first, DType dtype)
    : input_(input_size), hidden_(hidden_size), layers_(num_layers), bias_(bias), batch_first_(batch_first) {
  PEFT_CHECK(input_size > 0 && hidden_size > 0 && num_layers > 0, "LSTM: sizes must be positive (input_size=",
             input_size, ", hidden_size=", hidden_size, ", num_layers=", num_layers, ")");
  const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  for (int64_t l = 0; l < num_layers; ++l) {
    const std::string sfx = "_l" + std::to_string(l);
    const int64_t in = l == 0 ? input_size : hidden_size;
    std::vector<std::pair<std::string, Shape>> specs = {{"weight_ih" + sfx, {4 * hidden_size, in}},
                                                        {"weight_hh" + sfx, {4 * hidden_size, hidden_size}}};
    if (bias) {
      specs.push_back({"bias_ih" + sfx, {4 * hidden_size}});
      specs.push_back({"bias_hh" + sfx, {4 * hidden_size}});
    }
    for (auto& [name, shape] : specs) {
      Tensor t = Tensor::empty(shape, dtype);
      init::uniform_(t, -bound, bound);
      register_parameter(name, t);
    }
  }
}

std::vector<Tensor> LSTM::flat_weights() const {
  std::vector<Tensor> out;
  for (auto& kv : named_parameters(false)) out.push_back(kv.second);
  return out;
}

LSTMResult LSTM::forward_with_state(const Tensor& x, const std::optional<LSTMState>& hx) {
  PEFT_CHECK(x.dim() == 3 && x.size(2) == input_, "LSTM: expected input of shape (",
             batch_first_ ? "batch, seq, " : "seq, batch, ", input_, "), got ", shape_str(x.shape()));
  return lstm(x, hx, flat_weights(), bias_, layers_, batch_first_);
}

std::string LSTM::extra_repr() const {
  std::string s = std::to_string(input_) + ", " + std::to_string(hidden_);
  if (layers_ != 1) s += ", num_layers=" + std::to_string(layers_);
  if (!bias_) s += ", bias=False";
  if (batch_first_) s += ", batch_first=True";
  return s;
}

}  // namespace peft::nn
