// PyTorch's avg_pool2d written as a naive loop over windows in double: the reference of the
// CPU pooling kernel tests (test_cpu_kernels, test_cpu_pool).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/pool.h"

namespace peft::testing {

// Counts window positions one by one: those inside the padded input form the
// count_include_pad divisor, those inside the input the sum and the other divisor.
inline void naive_avg_pool(const kernels::cpu::Pool2dShape& s, const std::vector<double>& x,
                           const std::vector<double>& dy, std::vector<double>& y, std::vector<double>& dx) {
  y.assign(static_cast<size_t>(s.N * s.C * s.Ho * s.Wo), 0.0);
  dx.assign(x.size(), 0.0);
  for (int64_t p = 0; p < s.N * s.C; ++p)
    for (int64_t oh = 0; oh < s.Ho; ++oh)
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        double sum = 0;
        int64_t in_input = 0, in_padded = 0;
        std::vector<int64_t> taps;
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t ih = oh * s.sh - s.ph + i, iw = ow * s.sw - s.pw + j;
            if (ih >= s.H + s.ph || iw >= s.W + s.pw) continue;
            ++in_padded;
            if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
            ++in_input;
            taps.push_back((p * s.H + ih) * s.W + iw);
            sum += x[taps.back()];
          }
        if (in_input == 0) continue;
        const double div = static_cast<double>(s.count_include_pad ? in_padded : in_input);
        const int64_t yi = (p * s.Ho + oh) * s.Wo + ow;
        y[yi] = sum / div;
        for (int64_t xi : taps) dx[xi] += dy[yi] / div;
      }
}

}  // namespace peft::testing
