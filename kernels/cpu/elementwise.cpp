// Elementwise kernels. Design: coalesce adjacent dims whose strides chain for every operand,
// then iterate the outer index space with an odometer and run the innermost dim as a plain
// loop (specialised for unit / zero strides so GCC vectorises it). Large work is split over
// OpenMP threads by outer rows, or by chunks of the inner dim when there is a single row.
// Float GELU (erf form) and its backward use the branch-free fast_math.h functions; their
// unit-stride rows go through a `#pragma omp simd` loop (scalar erff/expf were ~7% of a
// PoolFormer step), and the strided / broadcast rows call the same functions per element.
#include "kernels/cpu/elementwise.h"

#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/dtype.h"
#include "kernels/cpu/fast_math.h"

namespace peft::kernels::cpu {
namespace {

constexpr int64_t kParallelGrain = 1 << 15;

template <size_t NT>
struct Loop {
  Dims shape;
  std::array<Dims, NT> strides;
};

// Drops size-1 dims and merges dims i-1, i when stride[i-1] == stride[i] * shape[i] for all operands.
template <size_t NT>
Loop<NT> coalesce(const Dims& shape, const std::array<const Dims*, NT>& strides) {
  Loop<NT> l;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!l.shape.empty()) {
      bool mergeable = true;
      for (size_t k = 0; k < NT; ++k)
        if (l.strides[k].back() != (*strides[k])[d] * shape[d]) mergeable = false;
      if (mergeable) {
        l.shape.back() *= shape[d];
        for (size_t k = 0; k < NT; ++k) l.strides[k].back() = (*strides[k])[d];
        continue;
      }
    }
    l.shape.push_back(shape[d]);
    for (size_t k = 0; k < NT; ++k) l.strides[k].push_back((*strides[k])[d]);
  }
  if (l.shape.empty()) {
    l.shape.push_back(1);
    for (size_t k = 0; k < NT; ++k) l.strides[k].push_back(0);
  }
  return l;
}

// Calls row(offsets, n, inner_strides) for every inner row; rows are independent unless an
// operand has stride 0 along an outer dim and is written (reductions): `parallel` says.
template <size_t NT, class Row>
void for_each_row(const Loop<NT>& l, bool parallel, Row row) {
  const int64_t nd = static_cast<int64_t>(l.shape.size());
  const int64_t inner = l.shape[nd - 1];
  std::array<int64_t, NT> inner_strides;
  for (size_t k = 0; k < NT; ++k) inner_strides[k] = l.strides[k][nd - 1];
  int64_t rows = 1;
  for (int64_t d = 0; d < nd - 1; ++d) rows *= l.shape[d];
  auto offsets_of = [&](int64_t r) {
    std::array<int64_t, NT> off{};
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t i = r % l.shape[d];
      r /= l.shape[d];
      for (size_t k = 0; k < NT; ++k) off[k] += i * l.strides[k][d];
    }
    return off;
  };
  const int64_t total = rows * inner;
  if (parallel && total >= kParallelGrain && rows == 1) {
    const int64_t chunk = 8192;
    const int64_t nchunks = (inner + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; ++c) {
      std::array<int64_t, NT> off{};
      int64_t begin = c * chunk, n = std::min(chunk, inner - begin);
      for (size_t k = 0; k < NT; ++k) off[k] = begin * inner_strides[k];
      row(off, n, inner_strides);
    }
    return;
  }
  if (parallel && total >= kParallelGrain) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) row(offsets_of(r), inner, inner_strides);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) row(offsets_of(r), inner, inner_strides);
}

template <class T>
inline T apply_unary(UnaryOp op, T x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Abs: return std::abs(x);
    case UnaryOp::Relu: return x > T(0) ? x : T(0);
    case UnaryOp::Sigmoid: return T(1) / (T(1) + std::exp(-x));
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::GeluErf:
      if constexpr (std::is_same_v<T, float>) return fast_math::gelu_erf(x);
      else return T(0.5) * x * (T(1) + std::erf(x * T(M_SQRT1_2)));
    case UnaryOp::GeluTanh: {
      const T k = T(M_2_SQRTPI * M_SQRT1_2);  // sqrt(2/pi)
      return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
    }
  }
  return x;
}

template <class T>
inline T apply_binary(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow: return std::pow(a, b);
    case BinaryOp::Maximum: return a > b ? a : b;
    case BinaryOp::ReluBackward: return b > T(0) ? a : T(0);
    case BinaryOp::GeluErfBackward: {
      if constexpr (std::is_same_v<T, float>) return a * fast_math::gelu_erf_grad(b);
      T cdf = T(0.5) * (T(1) + std::erf(b * T(M_SQRT1_2)));
      T pdf = std::exp(T(-0.5) * b * b) * T(0.5 * M_2_SQRTPI * M_SQRT1_2);
      return a * (cdf + b * pdf);
    }
    case BinaryOp::GeluTanhBackward: {
      const T k = T(M_2_SQRTPI * M_SQRT1_2);
      T inner = k * (b + T(0.044715) * b * b * b);
      T th = std::tanh(inner);
      T dinner = k * (T(1) + T(3 * 0.044715) * b * b);
      return a * (T(0.5) * (T(1) + th) + T(0.5) * b * (T(1) - th * th) * dinner);
    }
    case BinaryOp::SigmoidBackward: return a * b * (T(1) - b);
    case BinaryOp::TanhBackward: return a * (T(1) - b * b);
  }
  return a;
}

// Instantiates the inner loop per op so the switch is hoisted out of it.
template <class T, class F>
inline void inner_binary(T* o, const T* a, const T* b, int64_t n, int64_t so, int64_t sa, int64_t sb, F f) {
  if (so == 1 && sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (so == 1 && sa == 1 && sb == 0) {
    const T bv = b[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (so == 1 && sa == 0 && sb == 1) {
    const T av = a[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa], b[i * sb]);
  }
}

template <class T, class F>
inline void inner_unary(T* o, const T* a, int64_t n, int64_t so, int64_t sa, F f) {
  if (so == 1 && sa == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa]);
  }
}

template <class T, class F>
void run_binary(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, const T* b, const Dims& bs, F f) {
  auto l = coalesce<3>(shape, {&os, &as, &bs});
  for_each_row(l, true, [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
    inner_binary(out + off[0], a + off[1], b + off[2], n, st[0], st[1], st[2], f);
  });
}

template <class T, class F>
void run_unary(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, F f) {
  auto l = coalesce<2>(shape, {&os, &as});
  for_each_row(l, true, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    inner_unary(out + off[0], a + off[1], n, st[0], st[1], f);
  });
}

// Float GELU rows with unit stride in every operand. `omp simd` states that the iterations
// are independent (in place, out == x, is fine), so GCC vectorises the inlined fast_math code
// without a runtime alias check and whatever its cost model thinks of the long body.
void gelu_erf_row(float* out, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = fast_math::gelu_erf(x[i]);
}

void gelu_erf_backward_row(float* out, const float* g, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] * fast_math::gelu_erf_grad(x[i]);
}

void run_gelu_erf(const Dims& shape, float* out, const Dims& os, const float* a, const Dims& as) {
  auto l = coalesce<2>(shape, {&os, &as});
  for_each_row(l, true, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    if (st[0] == 1 && st[1] == 1) gelu_erf_row(out + off[0], a + off[1], n);
    else inner_unary(out + off[0], a + off[1], n, st[0], st[1], [](float x) { return fast_math::gelu_erf(x); });
  });
}

void run_gelu_erf_backward(const Dims& shape, float* out, const Dims& os, const float* g, const Dims& gs,
                           const float* x, const Dims& xs) {
  auto l = coalesce<3>(shape, {&os, &gs, &xs});
  for_each_row(l, true, [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      gelu_erf_backward_row(out + off[0], g + off[1], x + off[2], n);
    } else {
      inner_binary(out + off[0], g + off[1], x + off[2], n, st[0], st[1], st[2],
                   [](float gv, float xv) { return gv * fast_math::gelu_erf_grad(xv); });
    }
  });
}

}  // namespace

template <class T>
void unary(UnaryOp op, const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as) {
  if constexpr (std::is_same_v<T, float>) {
    if (op == UnaryOp::GeluErf) return run_gelu_erf(shape, out, os, a, as);
  }
  switch (op) {
#define PEFT_UNARY_CASE(OP) \
    case UnaryOp::OP: run_unary(shape, out, os, a, as, [](T x) { return apply_unary(UnaryOp::OP, x); }); break;
    PEFT_UNARY_CASE(Neg) PEFT_UNARY_CASE(Exp) PEFT_UNARY_CASE(Log) PEFT_UNARY_CASE(Sqrt) PEFT_UNARY_CASE(Abs)
    PEFT_UNARY_CASE(Relu) PEFT_UNARY_CASE(Sigmoid) PEFT_UNARY_CASE(Tanh) PEFT_UNARY_CASE(GeluErf)
    PEFT_UNARY_CASE(GeluTanh)
#undef PEFT_UNARY_CASE
  }
}

template <class T>
void binary(BinaryOp op, const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, const T* b,
            const Dims& bs) {
  if constexpr (std::is_same_v<T, float>) {
    if (op == BinaryOp::GeluErfBackward) return run_gelu_erf_backward(shape, out, os, a, as, b, bs);
  }
  switch (op) {
#define PEFT_BINARY_CASE(OP) \
    case BinaryOp::OP: run_binary(shape, out, os, a, as, b, bs, [](T x, T y) { return apply_binary(BinaryOp::OP, x, y); }); break;
    PEFT_BINARY_CASE(Add) PEFT_BINARY_CASE(Sub) PEFT_BINARY_CASE(Mul) PEFT_BINARY_CASE(Div) PEFT_BINARY_CASE(Pow)
    PEFT_BINARY_CASE(Maximum) PEFT_BINARY_CASE(ReluBackward) PEFT_BINARY_CASE(GeluErfBackward)
    PEFT_BINARY_CASE(GeluTanhBackward) PEFT_BINARY_CASE(SigmoidBackward) PEFT_BINARY_CASE(TanhBackward)
#undef PEFT_BINARY_CASE
  }
}

template <class T>
void affine(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, T alpha, T beta) {
  run_unary(shape, out, os, a, as, [alpha, beta](T x) { return x * alpha + beta; });
}

template <class T>
void pow_scalar(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, T p) {
  if (p == T(2)) run_unary(shape, out, os, a, as, [](T x) { return x * x; });
  else run_unary(shape, out, os, a, as, [p](T x) { return std::pow(x, p); });
}

template <class T>
void sum_reduce(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as) {
  auto l = coalesce<2>(shape, {&os, &as});
  // Rows can share an output element, so this runs on one thread.
  for_each_row(l, false, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    T* o = out + off[0];
    const T* x = a + off[1];
    if (st[0] == 0) {
      double acc = 0;
      if (st[1] == 1) for (int64_t i = 0; i < n; ++i) acc += x[i];
      else for (int64_t i = 0; i < n; ++i) acc += x[i * st[1]];
      *o += static_cast<T>(acc);
    } else if (st[0] == 1 && st[1] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] += x[i];
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] += x[i * st[1]];
    }
  });
}

template <class T>
void fill(const Dims& shape, T* out, const Dims& os, T value) {
  run_unary(shape, out, os, out, os, [value](T) { return value; });
}

}  // namespace peft::kernels::cpu

namespace peft::kernels::cpu {
namespace {
double load_as_double(const void* base, int dtype, int64_t i) {
  switch (dtype) {
    case 0: return static_cast<const float*>(base)[i];
    case 1: return static_cast<const double*>(base)[i];
    case 2: return static_cast<double>(static_cast<const int64_t*>(base)[i]);
    case 3: return peft::bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    default: return peft::f16_to_float(static_cast<const uint16_t*>(base)[i]);
  }
}
void store_from_double(void* base, int dtype, int64_t i, double v) {
  switch (dtype) {
    case 0: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case 1: static_cast<double*>(base)[i] = v; break;
    case 2: static_cast<int64_t*>(base)[i] = static_cast<int64_t>(v); break;
    case 3: static_cast<uint16_t*>(base)[i] = peft::float_to_bf16(static_cast<float>(v)); break;
    default: static_cast<uint16_t*>(base)[i] = peft::float_to_f16(static_cast<float>(v)); break;
  }
}
size_t code_size(int dtype) { return (dtype == 3 || dtype == 4) ? 2 : (dtype == 0 ? 4 : 8); }
template <class U>
void strided_copy_as(void* dst, int64_t d0, int64_t ds, const void* src, int64_t s0, int64_t ss, int64_t n) {
  U* o = static_cast<U*>(dst) + d0;
  const U* x = static_cast<const U*>(src) + s0;
  for (int64_t i = 0; i < n; ++i) o[i * ds] = x[i * ss];
}
void strided_copy_bits(void* dst, int64_t d0, int64_t ds, const void* src, int64_t s0, int64_t ss, int64_t n,
                       size_t esize) {
  if (esize == 8) strided_copy_as<uint64_t>(dst, d0, ds, src, s0, ss, n);
  else if (esize == 4) strided_copy_as<uint32_t>(dst, d0, ds, src, s0, ss, n);
  else strided_copy_as<uint16_t>(dst, d0, ds, src, s0, ss, n);
}
}  // namespace

void copy_convert(const Dims& shape, void* dst, int dst_dtype, const Dims& ds, const void* src, int src_dtype,
                  const Dims& ss) {
  auto l = coalesce<2>(shape, {&ds, &ss});
  const size_t esize = code_size(dst_dtype);
  for_each_row(l, true, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    if (dst_dtype == src_dtype && st[0] == 1 && st[1] == 1) {
      std::memcpy(static_cast<char*>(dst) + off[0] * esize, static_cast<const char*>(src) + off[1] * esize, n * esize);
    } else if (dst_dtype == src_dtype) {
      // Same dtype: move the bits. Going through double would round I64 beyond 2^53.
      strided_copy_bits(dst, off[0], st[0], src, off[1], st[1], n, esize);
    } else {
      for (int64_t i = 0; i < n; ++i)
        store_from_double(dst, dst_dtype, off[0] + i * st[0], load_as_double(src, src_dtype, off[1] + i * st[1]));
    }
  });
}

#define PEFT_INSTANTIATE(T)                                                                                    \
  template void unary<T>(UnaryOp, const Dims&, T*, const Dims&, const T*, const Dims&);                         \
  template void binary<T>(BinaryOp, const Dims&, T*, const Dims&, const T*, const Dims&, const T*, const Dims&); \
  template void affine<T>(const Dims&, T*, const Dims&, const T*, const Dims&, T, T);                           \
  template void pow_scalar<T>(const Dims&, T*, const Dims&, const T*, const Dims&, T);                          \
  template void sum_reduce<T>(const Dims&, T*, const Dims&, const T*, const Dims&);                             \
  template void fill<T>(const Dims&, T*, const Dims&, T);
PEFT_INSTANTIATE(float)
PEFT_INSTANTIATE(double)
#undef PEFT_INSTANTIATE
template void fill<int64_t>(const Dims&, int64_t*, const Dims&, int64_t);

}  // namespace peft::kernels::cpu
