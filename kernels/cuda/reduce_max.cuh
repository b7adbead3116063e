// kernels/cuda/reduce_max.cuh — max over the last dim of contiguous rows (values + first argmax)
// and its backward scatter: the GPU twin of core/ops_reduce.cpp's CPU loop. Device pointers;
// launchers queue on `stream` without syncing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace peft::kernels::cuda {

// For each row r of x (nrows, n), n >= 1: values[r] = the maximum and indices[r] = the index of
// its first occurrence, with NaN greater than everything (the first NaN wins), exactly the CPU
// rule `x[j] > x[best] || (isnan(x[j]) && !isnan(x[best]))` scanned left to right.
template <class T>
void max_lastdim(int64_t nrows, int64_t n,
                 const T* x,         // (nrows, n)
                 T* values,          // (nrows), written with =
                 int64_t* indices,   // (nrows), written with =
                 cudaStream_t stream);

// gi[(p·n + idx[r])·inner + q] = gv[r] for r = p·inner + q: the gradient of max routed to the
// argmax positions. Every other element of gi is left as it is (the caller zeroes gi). Each
// (p, q) owns one position, so there are no write conflicts. Indices must be in [0, n).
template <class T>
void max_backward_scatter(int64_t outer, int64_t n, int64_t inner,
                          const int64_t* idx,  // (outer·inner)
                          const T* gv,         // (outer·inner)
                          T* gi,               // (outer, n, inner)
                          cudaStream_t stream);

}  // namespace peft::kernels::cuda
