// kernels/cpu/dropout_philox.h — dropout whose mask is a pure function of (seed, offset, index),
// drawn from kernels/philox.h. The CPU reference for kernels/cuda/dropout.cu: both devices give
// the same mask for the same (seed, offset), and backward regenerates it instead of storing it.
//
// Element i is dropped when philox_uniform(seed, offset, i) < float(p), kept otherwise; a kept
// element is scaled by T(1 / (1 - p)) (computed in double). p is compared as a float on both
// devices, so the decision is bit-identical. Preconditions (n >= 0, 0 <= p <= 1) are the
// caller's to check; p == 1 drops everything (the scale is never applied).
#pragma once

#include <cstdint>

namespace peft::kernels::cpu {

// mask[i] = 1 when element i is kept, 0 when dropped.
void dropout_philox_mask(int64_t n, double p, uint64_t seed, uint64_t offset,
                         uint8_t* mask);  // (n)

// y = x * keep(i) / (1 - p); y may alias x. Written with =.
template <class T>
void dropout_philox_forward(int64_t n, double p, uint64_t seed, uint64_t offset,
                            const T* x,  // (n)
                            T* y);       // (n)

// dx = dy * keep(i) / (1 - p): the same mask regenerated from (seed, offset).
template <class T>
void dropout_philox_backward(int64_t n, double p, uint64_t seed, uint64_t offset,
                             const T* dy,  // (n)
                             T* dx);       // (n)

}  // namespace peft::kernels::cpu
