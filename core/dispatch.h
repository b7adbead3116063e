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

// Same device and dtype for all defined tensors; floating dtype; and, until the op has a CUDA
// kernel, the CPU (check_cpu).
void check_float_inputs(const char* op, std::initializer_list<const Tensor*> ts);
// The same checks without check_cpu, for ops with a CUDA path (core/cuda_ops.h): the op then
// branches on the device itself.
void check_float_inputs_any_device(const char* op, std::initializer_list<const Tensor*> ts);
// Refuses a tensor whose memory the CPU kernels cannot read: "relu: not implemented on cuda:0
// yet (CPU only); move the tensor with .to(Device::cpu())". Every path that hands a tensor's
// data_ptr to CPU code passes here or through check_float_inputs.
void check_cpu(const char* op, const Tensor& t);
// The detached, contiguous version of t (for kernels that take raw row-major pointers); CPU
// tensors only (checked, as a last line of defence behind check_float_inputs).
Tensor contiguous_data(const Tensor& t);
// The detached, contiguous version of t on its own device (CPU or CUDA), for ops that branch
// on the device before touching memory.
Tensor contiguous_detached(const Tensor& t);

// dst ← src (src already expanded to dst's shape; dtypes converted) when either is not on the
// CPU: one byte copy when both are contiguous in the same dtype; on one CUDA device, the CUDA
// strided copy_convert kernel; across devices, src made contiguous on its own device, its bytes
// moved, and the layout / dtype work done on dst's device. No autograd; Tensor::copy_ routes here.
void copy_across_devices(const Tensor& dst, const Tensor& src);

// Matrix products without history on 2-D operands (transposed views are used in place):
// out (M, N) = a (M, K) · b (K, N) + beta · out, and a fresh a · b.
void gemm_into(const Tensor& a, const Tensor& b, Tensor& out, double beta);
Tensor mm_raw(const Tensor& a, const Tensor& b);
// out (M, N) = a (M, K) · b (K, N) + bias (N; undefined: none), out contiguous and of a's dtype.
// On CUDA the bias rides in the GEMM's epilogue (cuda_ops::gemm_fused): y is written once.
void gemm_bias_into(const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& out);
}  // namespace peft::detail
namespace peft {
class Generator;
}  // namespace peft
namespace peft::detail {
// lora_linear's CUDA path under LoraCudaPath::Auto (core/ops_lora_fast.cpp); inputs checked by
// lora_linear. lora_fast_merges: the rule that picks the merged algebra over the epilogue chain.
Tensor lora_linear_fast(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& A, const Tensor& B,
                        double scale, double dropout_p, bool training, Generator* gen);
bool lora_fast_merges(int64_t n_rows, int64_t in_f, int64_t out_f, double dropout_in_effect);
// An optional operand's memory for a kernel: its data, or nullptr when the tensor is undefined.
inline void* ptr_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

}  // namespace peft::detail
