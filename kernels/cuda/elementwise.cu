// kernels/cuda/elementwise.cu — elementwise math, reductions and conversions on strided operands.
//
// Design: the host coalesces dims exactly as the CPU kernel does (size-1 dims dropped, dims whose
// strides chain for every operand merged), then passes shape + per-operand strides by value in a
// fixed-size Indexer (kMaxDims, checked). One grid-stride kernel template walks the linear index
// space in int64; each thread turns its index into per-operand offsets by div/mod from the
// innermost dim, or by one multiply when everything coalesced into a single dim (the contiguous
// and scalar-broadcast fast path). The per-element work is a functor (no extended lambdas
// needed), with the op a template argument so the switch happens once on the host.
//
// Contiguous operands (all strides 1, 16-byte aligned) take vec_kernel.cuh's 16-byte-vector
// kernel instead; same-dtype contiguous copies are a cudaMemcpyAsync.
//
// sum_reduce is a real reduction, not atomics: each output element is owned by one thread (when
// the innermost dim is kept and there are enough outputs: consecutive threads then read
// consecutive memory) or by one block (tree reduction), accumulating in double like the CPU's
// row sums. The result is deterministic for a given shape.
//
// Dtypes: float, double and Bf16 (bf16.cuh): a Bf16 operand is widened to float on load, the op
// runs in float and the result is rounded to BF16 once on store; sum_reduce still accumulates
// in double. fill stores the caller's bits (a Bf16 value arrives already rounded).
#include "kernels/cuda/elementwise.cuh"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/vec_kernel.cuh"

namespace peft::kernels::cuda {

namespace {

using detail::grid_for;
using detail::kThreads;
using detail::contiguous_count;
using detail::launch_vec;

template <int NT>
struct Indexer {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[NT][kMaxDims] = {};
};

// ---------------------------------------------------------------------------- device helpers

template <int NT>
__device__ __forceinline__ void offsets_of(const Indexer<NT>& ix, int64_t i, int64_t (&off)[NT]) {
#pragma unroll
  for (int k = 0; k < NT; ++k) off[k] = 0;
  for (int d = ix.ndim - 1; d >= 0; --d) {
    const int64_t s = ix.shape[d];
    const int64_t q = i / s;
    const int64_t r = i - q * s;
    i = q;
#pragma unroll
    for (int k = 0; k < NT; ++k) off[k] += r * ix.strides[k][d];
  }
}

// Same formulas, same constants and same evaluation order as kernels/cpu/elementwise.cpp.
template <class T, UnaryOp OP>
__device__ __forceinline__ T apply_unary(T x) {
  using namespace detail;
  if constexpr (OP == UnaryOp::Neg) return -x;
  else if constexpr (OP == UnaryOp::Exp) return dexp(x);
  else if constexpr (OP == UnaryOp::Log) return dlog(x);
  else if constexpr (OP == UnaryOp::Sqrt) return dsqrt(x);
  else if constexpr (OP == UnaryOp::Abs) return dabs(x);
  else if constexpr (OP == UnaryOp::Relu) return x > T(0) ? x : T(0);
  else if constexpr (OP == UnaryOp::Sigmoid) return T(1) / (T(1) + dexp(-x));
  else if constexpr (OP == UnaryOp::Tanh) return dtanh(x);
  else if constexpr (OP == UnaryOp::GeluErf) return T(0.5) * x * (T(1) + derf(x * T(M_SQRT1_2)));
  else {
    static_assert(OP == UnaryOp::GeluTanh, "unhandled UnaryOp");
    const T k = T(M_2_SQRTPI * M_SQRT1_2);  // sqrt(2/pi)
    return T(0.5) * x * (T(1) + dtanh(k * (x + T(0.044715) * x * x * x)));
  }
}

template <class T, BinaryOp OP>
__device__ __forceinline__ T apply_binary(T a, T b) {
  using namespace detail;
  if constexpr (OP == BinaryOp::Add) return a + b;
  else if constexpr (OP == BinaryOp::Sub) return a - b;
  else if constexpr (OP == BinaryOp::Mul) return a * b;
  else if constexpr (OP == BinaryOp::Div) return a / b;
  else if constexpr (OP == BinaryOp::Pow) return dpow(a, b);
  else if constexpr (OP == BinaryOp::Maximum) return a > b ? a : b;
  else if constexpr (OP == BinaryOp::ReluBackward) return b > T(0) ? a : T(0);
  else if constexpr (OP == BinaryOp::GeluErfBackward) {
    const T cdf = T(0.5) * (T(1) + derf(b * T(M_SQRT1_2)));
    const T pdf = dexp(T(-0.5) * b * b) * T(0.5 * M_2_SQRTPI * M_SQRT1_2);
    return a * (cdf + b * pdf);
  } else if constexpr (OP == BinaryOp::GeluTanhBackward) {
    const T k = T(M_2_SQRTPI * M_SQRT1_2);
    const T inner = k * (b + T(0.044715) * b * b * b);
    const T th = dtanh(inner);
    const T dinner = k * (T(1) + T(3 * 0.044715) * b * b);
    return a * (T(0.5) * (T(1) + th) + T(0.5) * b * (T(1) - th * th) * dinner);
  } else if constexpr (OP == BinaryOp::SigmoidBackward) return a * b * (T(1) - b);
  else {
    static_assert(OP == BinaryOp::TanhBackward, "unhandled BinaryOp");
    return a * (T(1) - b * b);
  }
}

// Bit-exact port of core/dtype.cpp's conversion (the BF16 ones are in bf16.cuh).
__device__ __forceinline__ float f16_to_float_dev(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return __uint_as_float(bits);
}

__device__ __forceinline__ uint16_t float_to_f16_dev(float f) {
  const uint32_t x = __float_as_uint(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xffu) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xffu) == 0xffu) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent: correct
  return static_cast<uint16_t>(half);
}

template <int CODE>
__device__ __forceinline__ double load_as_double(const void* base, int64_t i) {
  if constexpr (CODE == 0) return static_cast<const float*>(base)[i];
  else if constexpr (CODE == 1) return static_cast<const double*>(base)[i];
  else if constexpr (CODE == 2) return static_cast<double>(static_cast<const int64_t*>(base)[i]);
  else if constexpr (CODE == 3) return bf16_to_float_dev(static_cast<const uint16_t*>(base)[i]);
  else return f16_to_float_dev(static_cast<const uint16_t*>(base)[i]);
}

template <int CODE>
__device__ __forceinline__ void store_from_double(void* base, int64_t i, double v) {
  if constexpr (CODE == 0) static_cast<float*>(base)[i] = static_cast<float>(v);
  else if constexpr (CODE == 1) static_cast<double*>(base)[i] = v;
  else if constexpr (CODE == 2) static_cast<int64_t*>(base)[i] = static_cast<int64_t>(v);
  else if constexpr (CODE == 3) static_cast<uint16_t*>(base)[i] = float_to_bf16_dev(static_cast<float>(v));
  else static_cast<uint16_t*>(base)[i] = float_to_f16_dev(static_cast<float>(v));
}

// ---------------------------------------------------------------------------- per-element functors
// Each loads its operands into acc_t<T> (float for BF16), computes there and rounds once on store.

template <class T, UnaryOp OP>
struct UnaryFn {
  T* out;        // strided
  const T* a;    // strided
  __device__ void operator()(const int64_t (&o)[2]) const {
    out[o[0]] = from_acc<T>(apply_unary<acc_t<T>, OP>(to_acc(a[o[1]])));
  }
};

template <class T, BinaryOp OP>
struct BinaryFn {
  T* out;
  const T* a;
  const T* b;
  __device__ void operator()(const int64_t (&o)[3]) const {
    out[o[0]] = from_acc<T>(apply_binary<acc_t<T>, OP>(to_acc(a[o[1]]), to_acc(b[o[2]])));
  }
};

template <class T>
struct AffineFn {
  T* out;
  const T* a;
  acc_t<T> alpha, beta;
  __device__ void operator()(const int64_t (&o)[2]) const { out[o[0]] = from_acc<T>(to_acc(a[o[1]]) * alpha + beta); }
};

template <class T>
struct SquareFn {
  T* out;
  const T* a;
  __device__ void operator()(const int64_t (&o)[2]) const {
    const acc_t<T> x = to_acc(a[o[1]]);
    out[o[0]] = from_acc<T>(x * x);
  }
};

template <class T>
struct PowFn {
  T* out;
  const T* a;
  acc_t<T> p;
  __device__ void operator()(const int64_t (&o)[2]) const { out[o[0]] = from_acc<T>(detail::dpow(to_acc(a[o[1]]), p)); }
};

template <class T>
struct FillFn {
  T* out;
  T value;
  __device__ void operator()(const int64_t (&o)[1]) const { out[o[0]] = value; }
};

template <class T>
struct AddIntoFn {  // sum_reduce with nothing to reduce
  T* out;
  const T* a;
  __device__ void operator()(const int64_t (&o)[2]) const {
    out[o[0]] = from_acc<T>(to_acc(out[o[0]]) + to_acc(a[o[1]]));
  }
};

template <class U>
struct CopyBitsFn {
  U* dst;
  const U* src;
  __device__ void operator()(const int64_t (&o)[2]) const { dst[o[0]] = src[o[1]]; }
};

template <int DST, int SRC>
struct ConvertFn {
  void* dst;
  const void* src;
  __device__ void operator()(const int64_t (&o)[2]) const {
    store_from_double<DST>(dst, o[0], load_as_double<SRC>(src, o[1]));
  }
};

// Element ops for the vectorised path: T in, T out, computed in acc_t<T>.
template <class T, UnaryOp OP>
struct UnaryElem {
  __device__ __forceinline__ T operator()(T x) const { return from_acc<T>(apply_unary<acc_t<T>, OP>(to_acc(x))); }
};
template <class T, BinaryOp OP>
struct BinaryElem {
  __device__ __forceinline__ T operator()(T x, T y) const {
    return from_acc<T>(apply_binary<acc_t<T>, OP>(to_acc(x), to_acc(y)));
  }
};
template <class T>
struct AffineElem {
  acc_t<T> alpha, beta;
  __device__ __forceinline__ T operator()(T x) const { return from_acc<T>(to_acc(x) * alpha + beta); }
};

// ---------------------------------------------------------------------------- kernels

// ONE_DIM: the operands coalesced into a single dim, so offsets are index * stride.
template <int NT, bool ONE_DIM, class Fn>
__global__ void for_each_kernel(int64_t n, Indexer<NT> ix, Fn fn) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[NT];
    if constexpr (ONE_DIM) {
#pragma unroll
      for (int k = 0; k < NT; ++k) off[k] = i * ix.strides[k][0];
    } else {
      offsets_of(ix, i, off);
    }
    fn(off);
  }
}

// One thread per output element: `kept` maps output index -> (out offset, a offset), `red`
// maps reduction index -> a offset. Used when the innermost dim is kept (coalesced reads).
template <class T>
__global__ void sum_per_thread_kernel(int64_t K, int64_t R, Indexer<2> kept, Indexer<1> red, T* out, const T* a) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < K; k += step) {
    int64_t ko[2];
    offsets_of(kept, k, ko);
    double acc = 0;
    for (int64_t r = 0; r < R; ++r) {
      int64_t ro[1];
      offsets_of(red, r, ro);
      acc += static_cast<double>(to_acc(a[ko[1] + ro[0]]));
    }
    out[ko[0]] = from_acc<T>(to_acc(out[ko[0]]) + static_cast<acc_t<T>>(acc));
  }
}

// One block per output element, tree-reduced. The loop bound is uniform across the block, so
// the barriers inside block_reduce are reached by every thread.
template <class T>
__global__ void sum_per_block_kernel(int64_t K, int64_t R, Indexer<2> kept, Indexer<1> red, T* out, const T* a) {
  __shared__ double smem[32];
  for (int64_t k = blockIdx.x; k < K; k += gridDim.x) {
    int64_t ko[2];
    offsets_of(kept, k, ko);
    double acc = 0;
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
      int64_t ro[1];
      offsets_of(red, r, ro);
      acc += static_cast<double>(to_acc(a[ko[1] + ro[0]]));
    }
    acc = detail::block_reduce(acc, smem, detail::SumOp{}, 0.0);
    if (threadIdx.x == 0) out[ko[0]] = from_acc<T>(to_acc(out[ko[0]]) + static_cast<acc_t<T>>(acc));
  }
}

// ---------------------------------------------------------------------------- host: indexing

template <int NT>
struct Loop {
  Dims shape;
  std::array<Dims, NT> strides;
};

// Validates the operands, then the CPU kernel's coalescing: drops size-1 dims and merges dims
// d-1, d when stride[d-1] == stride[d] * shape[d] for every operand.
template <int NT>
Loop<NT> coalesce(const char* op, const Dims& shape, const std::array<const Dims*, NT>& strides, int64_t& numel) {
  numel = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    PEFT_CHECK(shape[d] >= 0, op, ": negative size ", shape[d], " in dim ", d, " of shape ", shape_str(shape));
    numel *= shape[d];
  }
  for (int k = 0; k < NT; ++k)
    PEFT_CHECK(strides[k]->size() == shape.size(), op, ": operand ", k, " has ", strides[k]->size(),
               " strides for a shape of rank ", shape.size(), " ", shape_str(shape));
  Loop<NT> l;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!l.shape.empty()) {
      bool mergeable = true;
      for (int k = 0; k < NT; ++k)
        if (l.strides[k].back() != (*strides[k])[d] * shape[d]) mergeable = false;
      if (mergeable) {
        l.shape.back() *= shape[d];
        for (int k = 0; k < NT; ++k) l.strides[k].back() = (*strides[k])[d];
        continue;
      }
    }
    l.shape.push_back(shape[d]);
    for (int k = 0; k < NT; ++k) l.strides[k].push_back((*strides[k])[d]);
  }
  if (l.shape.empty()) {
    l.shape.push_back(1);
    for (int k = 0; k < NT; ++k) l.strides[k].push_back(0);
  }
  PEFT_CHECK(l.shape.size() <= static_cast<size_t>(kMaxDims), op, ": shape ", shape_str(shape), " still has ",
             l.shape.size(), " dims after merging contiguous ones; the CUDA kernels take at most ", kMaxDims);
  return l;
}

template <int NT>
Indexer<NT> to_indexer(const Dims& shape, const std::array<const Dims*, NT>& strides) {
  Indexer<NT> ix;
  ix.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < ix.ndim; ++d) {
    ix.shape[d] = shape[d];
    for (int k = 0; k < NT; ++k) ix.strides[k][d] = (*strides[k])[d];
  }
  return ix;
}

template <int NT, class Fn>
void launch_for_each(const char* op, const Dims& shape, const std::array<const Dims*, NT>& strides,
                     const std::array<const void*, NT>& ptrs, Fn fn, cudaStream_t stream) {
  int64_t n = 0;
  const Loop<NT> l = coalesce<NT>(op, shape, strides, n);
  if (n == 0) return;
  for (int k = 0; k < NT; ++k) PEFT_CHECK(ptrs[k] != nullptr, op, ": operand ", k, " is a null device pointer");
  std::array<const Dims*, NT> ls;
  for (int k = 0; k < NT; ++k) ls[k] = &l.strides[k];
  const Indexer<NT> ix = to_indexer<NT>(l.shape, ls);
  if (ix.ndim == 1) for_each_kernel<NT, true><<<grid_for(n), kThreads, 0, stream>>>(n, ix, fn);
  else for_each_kernel<NT, false><<<grid_for(n), kThreads, 0, stream>>>(n, ix, fn);
  PEFT_KERNEL_CHECK();
}

template <class T, UnaryOp OP>
void launch_unary(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, cudaStream_t stream) {
  const int64_t n = contiguous_count<2>(shape, {&os, &as}, {out, a});
  if (n >= 0) return launch_vec<T, 1>(n, out, a, static_cast<const T*>(nullptr), UnaryElem<T, OP>{}, stream);
  launch_for_each<2>("cuda unary", shape, {&os, &as}, {out, a}, UnaryFn<T, OP>{out, a}, stream);
}

template <class T, BinaryOp OP>
void launch_binary(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, const T* b, const Dims& bs,
                   cudaStream_t stream) {
  const int64_t n = contiguous_count<3>(shape, {&os, &as, &bs}, {out, a, b});
  if (n >= 0) return launch_vec<T, 2>(n, out, a, b, BinaryElem<T, OP>{}, stream);
  launch_for_each<3>("cuda binary", shape, {&os, &as, &bs}, {out, a, b}, BinaryFn<T, OP>{out, a, b}, stream);
}

template <int SRC>
void convert_from(const Dims& shape, void* dst, int dst_dtype, const Dims& ds, const void* src, const Dims& ss,
                  cudaStream_t stream) {
  const char* op = "cuda copy_convert";
  switch (dst_dtype) {
    case 0: return launch_for_each<2>(op, shape, {&ds, &ss}, {dst, src}, ConvertFn<0, SRC>{dst, src}, stream);
    case 1: return launch_for_each<2>(op, shape, {&ds, &ss}, {dst, src}, ConvertFn<1, SRC>{dst, src}, stream);
    case 2: return launch_for_each<2>(op, shape, {&ds, &ss}, {dst, src}, ConvertFn<2, SRC>{dst, src}, stream);
    case 3: return launch_for_each<2>(op, shape, {&ds, &ss}, {dst, src}, ConvertFn<3, SRC>{dst, src}, stream);
    default: return launch_for_each<2>(op, shape, {&ds, &ss}, {dst, src}, ConvertFn<4, SRC>{dst, src}, stream);
  }
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

template <class T>
void unary(UnaryOp op, const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, cudaStream_t stream) {
  switch (op) {
#define PEFT_UNARY_CASE(OP) \
    case UnaryOp::OP: return launch_unary<T, UnaryOp::OP>(shape, out, os, a, as, stream);
    PEFT_UNARY_CASE(Neg) PEFT_UNARY_CASE(Exp) PEFT_UNARY_CASE(Log) PEFT_UNARY_CASE(Sqrt) PEFT_UNARY_CASE(Abs)
    PEFT_UNARY_CASE(Relu) PEFT_UNARY_CASE(Sigmoid) PEFT_UNARY_CASE(Tanh) PEFT_UNARY_CASE(GeluErf)
    PEFT_UNARY_CASE(GeluTanh)
#undef PEFT_UNARY_CASE
  }
  PEFT_ERROR("cuda unary: unknown op ", static_cast<int>(op));
}

template <class T>
void binary(BinaryOp op, const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, const T* b,
            const Dims& bs, cudaStream_t stream) {
  switch (op) {
#define PEFT_BINARY_CASE(OP) \
    case BinaryOp::OP: return launch_binary<T, BinaryOp::OP>(shape, out, os, a, as, b, bs, stream);
    PEFT_BINARY_CASE(Add) PEFT_BINARY_CASE(Sub) PEFT_BINARY_CASE(Mul) PEFT_BINARY_CASE(Div) PEFT_BINARY_CASE(Pow)
    PEFT_BINARY_CASE(Maximum) PEFT_BINARY_CASE(ReluBackward) PEFT_BINARY_CASE(GeluErfBackward)
    PEFT_BINARY_CASE(GeluTanhBackward) PEFT_BINARY_CASE(SigmoidBackward) PEFT_BINARY_CASE(TanhBackward)
#undef PEFT_BINARY_CASE
  }
  PEFT_ERROR("cuda binary: unknown op ", static_cast<int>(op));
}

template <class T>
void affine(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, acc_t<T> alpha, acc_t<T> beta,
            cudaStream_t stream) {
  const int64_t n = contiguous_count<2>(shape, {&os, &as}, {out, a});
  if (n >= 0) return launch_vec<T, 1>(n, out, a, static_cast<const T*>(nullptr), AffineElem<T>{alpha, beta}, stream);
  launch_for_each<2>("cuda affine", shape, {&os, &as}, {out, a}, AffineFn<T>{out, a, alpha, beta}, stream);
}

template <class T>
void pow_scalar(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, acc_t<T> p,
                cudaStream_t stream) {
  if (p == acc_t<T>(2)) launch_for_each<2>("cuda pow_scalar", shape, {&os, &as}, {out, a}, SquareFn<T>{out, a}, stream);
  else launch_for_each<2>("cuda pow_scalar", shape, {&os, &as}, {out, a}, PowFn<T>{out, a, p}, stream);
}

template <class T>
void fill(const Dims& shape, T* out, const Dims& os, T value, cudaStream_t stream) {
  launch_for_each<1>("cuda fill", shape, {&os}, {out}, FillFn<T>{out, value}, stream);
}

template <class T>
void sum_reduce(const Dims& shape, T* out, const Dims& os, const T* a, const Dims& as, cudaStream_t stream) {
  const char* op = "cuda sum_reduce";
  int64_t n = 0;
  const Loop<2> l = coalesce<2>(op, shape, {&os, &as}, n);
  if (n == 0) return;
  PEFT_CHECK(out != nullptr && a != nullptr, op, ": null device pointer (out ", static_cast<const void*>(out), ", a ",
             static_cast<const void*>(a), ")");
  // Split the coalesced dims: kept (out stride != 0) and reduced (out stride 0), order preserved.
  Dims kshape, kos, kas, rshape, ras;
  for (size_t d = 0; d < l.shape.size(); ++d) {
    if (l.strides[0][d] != 0) {
      kshape.push_back(l.shape[d]);
      kos.push_back(l.strides[0][d]);
      kas.push_back(l.strides[1][d]);
    } else {
      rshape.push_back(l.shape[d]);
      ras.push_back(l.strides[1][d]);
    }
  }
  if (rshape.empty()) {  // nothing to reduce: out += a
    launch_for_each<2>(op, shape, {&os, &as}, {out, a}, AddIntoFn<T>{out, a}, stream);
    return;
  }
  int64_t K = 1, R = 1;
  for (int64_t s : kshape) K *= s;
  for (int64_t s : rshape) R *= s;
  const Indexer<2> kept = to_indexer<2>(kshape, {&kos, &kas});
  const Indexer<1> red = to_indexer<1>(rshape, {&ras});
  const bool inner_kept = l.strides[0].back() != 0;
  if (inner_kept && K >= 1024) {
    sum_per_thread_kernel<T><<<grid_for(K), kThreads, 0, stream>>>(K, R, kept, red, out, a);
  } else {
    const int threads = detail::block_for_row(R);
    const unsigned blocks = static_cast<unsigned>(K < detail::kMaxBlocks ? K : detail::kMaxBlocks);
    sum_per_block_kernel<T><<<blocks, threads, 0, stream>>>(K, R, kept, red, out, a);
  }
  PEFT_KERNEL_CHECK();
}

void copy_convert(const Dims& shape, void* dst, int dst_dtype, const Dims& ds, const void* src, int src_dtype,
                  const Dims& ss, cudaStream_t stream) {
  const char* op = "cuda copy_convert";
  PEFT_CHECK(dst_dtype >= 0 && dst_dtype <= 4 && src_dtype >= 0 && src_dtype <= 4, op, ": dtype codes must be 0..4 "
             "(F32, F64, I64, BF16, F16), got dst ", dst_dtype, ", src ", src_dtype);
  if (dst_dtype == src_dtype) {
    const int64_t n = contiguous_count<2>(shape, {&ds, &ss}, {dst, src});
    if (n >= 0) {  // one contiguous run each: the copy engine's path
      static constexpr size_t kSize[] = {4, 8, 8, 2, 2};
      if (n > 0 && dst != src)
        PEFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * kSize[dst_dtype], cudaMemcpyDeviceToDevice,
                                        stream));
      return;
    }
    // Same dtype: move the bits. Going through double would round I64 beyond 2^53.
    if (dst_dtype == 3 || dst_dtype == 4)
      return launch_for_each<2>(op, shape, {&ds, &ss}, {dst, src},
                                CopyBitsFn<uint16_t>{static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(src)},
                                stream);
    if (dst_dtype == 0)
      return launch_for_each<2>(op, shape, {&ds, &ss}, {dst, src},
                                CopyBitsFn<uint32_t>{static_cast<uint32_t*>(dst), static_cast<const uint32_t*>(src)},
                                stream);
    return launch_for_each<2>(op, shape, {&ds, &ss}, {dst, src},
                              CopyBitsFn<uint64_t>{static_cast<uint64_t*>(dst), static_cast<const uint64_t*>(src)},
                              stream);
  }
  switch (src_dtype) {
    case 0: return convert_from<0>(shape, dst, dst_dtype, ds, src, ss, stream);
    case 1: return convert_from<1>(shape, dst, dst_dtype, ds, src, ss, stream);
    case 2: return convert_from<2>(shape, dst, dst_dtype, ds, src, ss, stream);
    case 3: return convert_from<3>(shape, dst, dst_dtype, ds, src, ss, stream);
    default: return convert_from<4>(shape, dst, dst_dtype, ds, src, ss, stream);
  }
}

#define PEFT_INSTANTIATE(T)                                                                                          \
  template void unary<T>(UnaryOp, const Dims&, T*, const Dims&, const T*, const Dims&, cudaStream_t);                 \
  template void binary<T>(BinaryOp, const Dims&, T*, const Dims&, const T*, const Dims&, const T*, const Dims&,       \
                          cudaStream_t);                                                                              \
  template void affine<T>(const Dims&, T*, const Dims&, const T*, const Dims&, acc_t<T>, acc_t<T>, cudaStream_t);     \
  template void pow_scalar<T>(const Dims&, T*, const Dims&, const T*, const Dims&, acc_t<T>, cudaStream_t);           \
  template void sum_reduce<T>(const Dims&, T*, const Dims&, const T*, const Dims&, cudaStream_t);                     \
  template void fill<T>(const Dims&, T*, const Dims&, T, cudaStream_t);
PEFT_INSTANTIATE(float)
PEFT_INSTANTIATE(double)
PEFT_INSTANTIATE(Bf16)
#undef PEFT_INSTANTIATE
template void fill<int64_t>(const Dims&, int64_t*, const Dims&, int64_t, cudaStream_t);

}  // namespace peft::kernels::cuda
