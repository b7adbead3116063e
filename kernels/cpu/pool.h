// kernels/cpu/pool.h — avg_pool2d with PyTorch's exact semantics, NCHW contiguous.
#pragma once

#include <cstdint>

namespace peft::kernels::cpu {

struct Pool2dShape {
  int64_t N, C, H, W;
  int64_t kh, kw, sh, sw, ph, pw;
  int64_t Ho, Wo;
  bool ceil_mode, count_include_pad;
};

// PyTorch's pooling_output_shape: floor (or ceil when ceil_mode) of
// (H + 2ph - kh) / sh, + 1; in ceil_mode the last window must start inside the input or
// its left padding, else it is dropped. 0 when the padded input is smaller than the kernel.
// Preconditions (kernel, stride > 0, pad <= kernel/2) are the caller's to check.
Pool2dShape pool2d_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool ceil_mode,
                         bool count_include_pad);

// Each output is the mean over its window clipped to the input; the divisor is the window
// clipped to the padded input (count_include_pad) or to the input itself (not). A window
// with no input element gives 0. divisor_override is not supported.
template <class T>
void avg_pool2d_forward(const Pool2dShape& s,
                        const T* x,  // (N, C, H, W)
                        T* y);       // (N, C, Ho, Wo), written with =

template <class T>
void avg_pool2d_backward(const Pool2dShape& s,
                         const T* dy,  // (N, C, Ho, Wo)
                         T* dx);       // (N, C, H, W), written with =

}  // namespace peft::kernels::cpu
