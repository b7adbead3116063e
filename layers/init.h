// Parameter initialisers with PyTorch's distributions (nn.init). All draw from a Generator
// (default: the global one) and write in place without recording history.
#pragma once
#include "core/random.h"
#include "core/tensor.h"

namespace peft::nn::init {

// fan_in / fan_out as torch.nn.init._calculate_fan_in_and_fan_out.
std::pair<int64_t, int64_t> fan_in_and_fan_out(const Tensor& t);
void uniform_(Tensor& t, double low, double high, Generator* gen = nullptr);
void normal_(Tensor& t, double mean = 0, double std = 1, Generator* gen = nullptr);
void zeros_(Tensor& t);
void ones_(Tensor& t);
// kaiming_uniform_(a): bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)).
void kaiming_uniform_(Tensor& t, double a = 0, Generator* gen = nullptr);

}  // namespace peft::nn::init
