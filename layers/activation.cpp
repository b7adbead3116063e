#include "layers/activation.h"

namespace peft::nn {

GELU::GELU(std::string approximate) : approximate_(std::move(approximate)) {
  PEFT_CHECK(approximate_ == "none" || approximate_ == "tanh", "GELU: approximate must be 'none' or 'tanh', got '",
             approximate_, "'");
}

Dropout::Dropout(double p) : p_(p) {
  PEFT_CHECK(p >= 0 && p <= 1, "Dropout: dropout probability has to be between 0 and 1, but got ", p);
}

std::string Dropout::extra_repr() const { return "p=" + float_repr(p_) + ", inplace=False"; }

}  // namespace peft::nn
