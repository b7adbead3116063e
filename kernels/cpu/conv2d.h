// kernels/cpu/conv2d.h — 2-D convolution (PyTorch Conv2d semantics: cross-correlation,
// zero padding, dilation, groups), forward and backward, NCHW contiguous.
#pragma once

#include <cstdint>

namespace peft::kernels::cpu {

struct Conv2dShape {
  int64_t N, C, H, W;               // input
  int64_t O, kh, kw;                // weight (O, C/groups, kh, kw)
  int64_t sh, sw, ph, pw, dh, dw;   // stride, padding, dilation
  int64_t groups;
  int64_t Ho, Wo;                   // output
};

// Ho = floor((H + 2ph - dh*(kh-1) - 1) / sh) + 1, as PyTorch; 0 when the (padded) input is
// smaller than the dilated kernel. Preconditions (groups divides C and O, strides and
// dilations > 0, Ho, Wo > 0) are the caller's to check.
Conv2dShape conv2d_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                         int64_t dh, int64_t dw, int64_t groups);

template <class T>
void conv2d_forward(const Conv2dShape& s,
                    const T* x,   // (N, C, H, W)
                    const T* w,   // (O, C/groups, kh, kw)
                    const T* b,   // (O) or nullptr
                    T* y);        // (N, O, Ho, Wo), written with =

// Each of dx, dw, db may be nullptr (not wanted); those given are written with =.
template <class T>
void conv2d_backward(const Conv2dShape& s,
                     const T* x,   // (N, C, H, W); only read when dw is wanted
                     const T* w,   // (O, C/groups, kh, kw); only read when dx is wanted
                     const T* dy,  // (N, O, Ho, Wo)
                     T* dx,        // (N, C, H, W) or nullptr
                     T* dw,        // (O, C/groups, kh, kw) or nullptr
                     T* db);       // (O) or nullptr

}  // namespace peft::kernels::cpu
