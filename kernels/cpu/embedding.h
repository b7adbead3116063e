// kernels/cpu/embedding.h — embedding lookup and its gradient (a scatter-add).
#pragma once

#include <cstdint>

namespace peft::kernels::cpu {

// out[i] = weight[ids[i]]; ids are in [0, V), validated by the caller.
template <class T>
void embedding_forward(int64_t n, int64_t dim,
                       const T* weight,      // (V, dim)
                       const int64_t* ids,   // (n)
                       T* out);              // (n, dim), written with =

// dw is zeroed, then dw[ids[i]] += dy[i] for every i whose id != padding_idx
// (padding_idx < 0: no padding row). Repeated ids accumulate.
template <class T>
void embedding_backward(int64_t n, int64_t dim, int64_t V,
                        const int64_t* ids,  // (n)
                        const T* dy,         // (n, dim)
                        T* dw,               // (V, dim), written with =
                        int64_t padding_idx);

}  // namespace peft::kernels::cpu
