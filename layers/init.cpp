#include "layers/init.h"

#include <cmath>

namespace peft::nn::init {

std::pair<int64_t, int64_t> fan_in_and_fan_out(const Tensor& t) {
  PEFT_CHECK(t.dim() >= 2, "init: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions (shape ",
             shape_str(t.shape()), ")");
  int64_t receptive = 1;
  for (int64_t i = 2; i < t.dim(); ++i) receptive *= t.shape()[i];
  return {t.shape()[1] * receptive, t.shape()[0] * receptive};
}

// Meta tensors (MetaDeviceGuard) have nothing to initialise: skipped before any random number is
// drawn, so counting a large model does not generate its weights on the host.
void uniform_(Tensor& t, double low, double high, Generator* gen) {
  if (t.device().is_meta()) return;
  NoGradGuard g;
  t.copy_(Tensor::rand(t.shape(), DType::F64, gen, low, high));
}

void normal_(Tensor& t, double mean, double std, Generator* gen) {
  if (t.device().is_meta()) return;
  NoGradGuard g;
  t.copy_(Tensor::randn(t.shape(), DType::F64, gen, mean, std));
}

void zeros_(Tensor& t) {
  NoGradGuard g;
  t.zero_();
}

void ones_(Tensor& t) {
  NoGradGuard g;
  t.fill_(1);
}

void kaiming_uniform_(Tensor& t, double a, Generator* gen) {
  const double fan_in = static_cast<double>(fan_in_and_fan_out(t).first);
  const double gain = std::sqrt(2.0 / (1 + a * a));
  const double bound = fan_in > 0 ? gain * std::sqrt(3.0 / fan_in) : 0.0;
  uniform_(t, -bound, bound, gen);
}

}  // namespace peft::nn::init
