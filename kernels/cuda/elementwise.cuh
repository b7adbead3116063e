// kernels/cuda/elementwise.cuh — the GPU twin of kernels/cpu/elementwise.h: the same ops (the
// CPU's UnaryOp / BinaryOp enums), the same strided, broadcasting (stride 0) operands, the same
// results up to the device's math-library rounding. Pointers are device pointers; shapes and
// strides (in elements) are host vectors. Every launcher queues on `stream` and returns without
// synchronising; it checks its arguments and the launch (peft::Error).
//
// Float launchers take T in float, double and Bf16 (bf16.cuh: BF16 storage, math in float);
// scalars come in the compute type acc_t<T>.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/bf16.cuh"

namespace peft::kernels::cuda {

using cpu::BinaryOp;
using cpu::Dims;
using cpu::UnaryOp;

// The most dims an operand may have after size-1 dims are dropped and chained dims merged.
constexpr int kMaxDims = 8;

template <class T>
void unary(UnaryOp op, const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides,
           cudaStream_t stream);
template <class T>
void binary(BinaryOp op, const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides,
            const T* b, const Dims& b_strides, cudaStream_t stream);
// out = a * alpha + beta.
template <class T>
void affine(const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides, acc_t<T> alpha,
            acc_t<T> beta, cudaStream_t stream);
// out = a^p (p == 2 as a * a, as on the CPU).
template <class T>
void pow_scalar(const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides, acc_t<T> p,
                cudaStream_t stream);
// out (the reduced shape, laid out with stride 0 on the reduced dims) += sum of a, accumulated
// in double (a BF16 out is read, added to and rounded once). Deterministic: each output is
// summed by one thread or one block in a fixed order.
template <class T>
void sum_reduce(const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides,
                cudaStream_t stream);
// T in float, double, Bf16, int64_t; value is stored as given.
template <class T>
void fill(const Dims& shape, T* out, const Dims& out_strides, T value, cudaStream_t stream);
// Strided copy with conversion between dtype codes 0..4 = F32, F64, I64, BF16, F16 (peft::DType
// order). Same dtype moves the bits; otherwise through double, bit-identical to the CPU's
// conversions (BF16 / F16 round to nearest even). Float -> I64 truncates; out of range is undefined.
void copy_convert(const Dims& shape, void* dst, int dst_dtype, const Dims& dst_strides, const void* src, int src_dtype,
                  const Dims& src_strides, cudaStream_t stream);

}  // namespace peft::kernels::cuda
