// Elementwise math on strided operands of one common (broadcast) shape. Strides are in
// elements and may be 0 (broadcast). Dims are coalesced and the innermost dim runs as a
// tight loop, so contiguous and scalar-broadcast operands vectorise.
#pragma once
#include <cstdint>
#include <vector>

namespace peft::kernels::cpu {

enum class UnaryOp { Neg, Exp, Log, Sqrt, Abs, Relu, Sigmoid, Tanh, GeluErf, GeluTanh };
enum class BinaryOp {
  Add, Sub, Mul, Div, Pow, Maximum,
  // backward helpers: out = f(grad, saved)
  ReluBackward,      // g * (x > 0)
  GeluErfBackward,   // g * gelu'(x)
  GeluTanhBackward,  // g * gelu_tanh'(x)
  SigmoidBackward,   // g * y * (1 - y)   (saved = y)
  TanhBackward,      // g * (1 - y^2)     (saved = y)
};

using Dims = std::vector<int64_t>;

template <class T>
void unary(UnaryOp op, const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides);
template <class T>
void binary(BinaryOp op, const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides,
            const T* b, const Dims& b_strides);
// out = a * alpha + beta (scalar affine), and out = a^p.
template <class T>
void affine(const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides, T alpha, T beta);
template <class T>
void pow_scalar(const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides, T p);
// out (reduced shape laid out with stride 0 on reduced dims) += sum of a; out must be zeroed.
template <class T>
void sum_reduce(const Dims& shape, T* out, const Dims& out_strides, const T* a, const Dims& a_strides);
// Strided copy with conversion; Src/Dst among float, double, int64_t, uint16_t(bf16/f16 by flag).
void copy_convert(const Dims& shape, void* dst, int dst_dtype, const Dims& dst_strides, const void* src,
                  int src_dtype, const Dims& src_strides);
template <class T>
void fill(const Dims& shape, T* out, const Dims& out_strides, T value);

}  // namespace peft::kernels::cpu
