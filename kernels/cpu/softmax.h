// kernels/cpu/softmax.h — softmax / log_softmax over one dimension, forward and backward.
// The tensor is viewed as (outer, D, inner) with the reduced dim in the middle, so any dim of
// a contiguous tensor works without a transpose (inner == 1 for the last dim).
#pragma once

#include <cstdint>

namespace peft::kernels::cpu {

// y = exp(x - max) / sum(exp(x - max)), or log of it when log; written with =.
template <class T>
void softmax_forward(int64_t outer, int64_t D, int64_t inner,
                     const T* x,  // (outer, D, inner)
                     T* y,        // (outer, D, inner)
                     bool log);

// From the forward output y: softmax dx = y * (dy - sum(dy * y)),
// log_softmax dx = dy - exp(y) * sum(dy); sums over D. Written with =.
template <class T>
void softmax_backward(int64_t outer, int64_t D, int64_t inner,
                      const T* y,   // (outer, D, inner)
                      const T* dy,  // (outer, D, inner)
                      T* dx,        // (outer, D, inner)
                      bool log);

}  // namespace peft::kernels::cpu
