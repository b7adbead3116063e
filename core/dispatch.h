// Internal helpers shared by the op implementations: dtype dispatch and input checks.
#pragma once
#include "core/tensor.h"

// Runs BODY with `scalar_t` bound to float or double according to DT.
#define PEFT_DISPATCH_FLOAT(DT, OPNAME, ...)                                                 \
  [&] {                                                                                      \
    switch (DT) {                                                                            \
      case ::peft::DType::F32: { using scalar_t = float; return __VA_ARGS__(); }             \
      case ::peft::DType::F64: { using scalar_t = double; return __VA_ARGS__(); }            \
      default:                                                                               \
        PEFT_ERROR(OPNAME, ": unsupported dtype ", ::peft::dtype_name(DT),                   \
                   " (CPU math runs in F32 or F64; convert with .to(DType::F32))");         \
    }                                                                                        \
  }()

namespace peft::detail {

// Same device and dtype for all defined tensors; floating dtype.
void check_float_inputs(const char* op, std::initializer_list<const Tensor*> ts);
// The detached, contiguous version of t (for kernels that take raw row-major pointers).
Tensor contiguous_data(const Tensor& t);

// Matrix products without history on 2-D operands (transposed views are used in place):
// out (M, N) = a (M, K) · b (K, N) + beta · out, and a fresh a · b.
void gemm_into(const Tensor& a, const Tensor& b, Tensor& out, double beta);
Tensor mm_raw(const Tensor& a, const Tensor& b);

}  // namespace peft::detail
