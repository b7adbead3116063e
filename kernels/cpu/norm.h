// kernels/cpu/norm.h — group_norm and layer_norm, forward and backward.
// Statistics use the biased variance; rstd = 1 / sqrt(var + eps). mean / rstd are saved by
// forward for backward. Every output is written with =; null dx / dw / db are skipped.
#pragma once

#include <cstdint>

namespace peft::kernels::cpu {

// x viewed as (N, C, S), S = product of the spatial dims; C is split into G groups of C/G
// consecutive channels, normalised together over (C/G) * S elements.
template <class T>
void group_norm_forward(int64_t N, int64_t C, int64_t S, int64_t G, T eps,
                        const T* x,           // (N, C, S)
                        const T* w,           // (C) or nullptr (= 1)
                        const T* b,           // (C) or nullptr (= 0)
                        T* y,                 // (N, C, S)
                        T* mean, T* rstd);    // (N, G) each

template <class T>
void group_norm_backward(int64_t N, int64_t C, int64_t S, int64_t G,
                         const T* x,                     // (N, C, S)
                         const T* w,                     // (C) or nullptr
                         const T* mean, const T* rstd,   // (N, G) from forward
                         const T* dy,                    // (N, C, S)
                         T* dx,                          // (N, C, S) or nullptr
                         T* dw, T* db);                  // (C) each, or nullptr

// Normalises each of R rows over its M contiguous elements.
template <class T>
void layer_norm_forward(int64_t R, int64_t M, T eps,
                        const T* x,           // (R, M)
                        const T* w,           // (M) or nullptr
                        const T* b,           // (M) or nullptr
                        T* y,                 // (R, M)
                        T* mean, T* rstd);    // (R) each

template <class T>
void layer_norm_backward(int64_t R, int64_t M,
                         const T* x,                     // (R, M)
                         const T* w,                     // (M) or nullptr
                         const T* mean, const T* rstd,   // (R) from forward
                         const T* dy,                    // (R, M)
                         T* dx,                          // (R, M) or nullptr
                         T* dw, T* db);                  // (M) each, or nullptr

}  // namespace peft::kernels::cpu
