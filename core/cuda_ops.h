// The CUDA op kernels as core/ sees them: plain declarations on raw device pointers, shapes and
// strides (in elements) plus the Device, no CUDA headers (as core/cuda_api.h). Each function
// picks the device's stream (everything on one stream per device, see kernels/cuda/memory.cuh)
// and the kernel for the dtype, and returns without synchronising, except where it says it
// checks indices. kernels/cuda/ops_bridge.cu and kernels/cuda/gemm.cu define them in a CUDA
// build; core/cuda_ops.cpp defines versions that throw "CUDA is not available in this build".
//
// Dtypes: every float op here takes F32 and F64. BF16 (mixed precision: BF16 weights and
// activations, F32 master weights) is taken by the GEMMs and by the activation ops (elementwise,
// sum_reduce, fill, softmax / losses, embedding, norms, avg_pool2d, conv2d, dropout): BF16
// storage, F32 math inside each kernel, one rounding per output (kernels/cuda/bf16.cuh). The
// norms' mean / rstd are then F32 buffers (acc dtype). F16 only in the GEMMs; adam_step
// (and max) F32 / F64 only. Other dtypes are refused with the op's name.
#pragma once
#include <cstdint>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "kernels/cpu/conv2d.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/pool.h"

namespace peft::cuda_ops {

using Dims = std::vector<int64_t>;
using kernels::cpu::BinaryOp;
using kernels::cpu::UnaryOp;

// ---- elementwise (same semantics as kernels/cpu/elementwise.h; stride 0 broadcasts)
void unary(UnaryOp op, const Dims& shape, void* out, const Dims& out_strides, const void* a, const Dims& a_strides,
           DType dtype, Device dev);
void binary(BinaryOp op, const Dims& shape, void* out, const Dims& out_strides, const void* a, const Dims& a_strides,
            const void* b, const Dims& b_strides, DType dtype, Device dev);
void affine(const Dims& shape, void* out, const Dims& out_strides, const void* a, const Dims& a_strides, double alpha,
            double beta, DType dtype, Device dev);
void pow_scalar(const Dims& shape, void* out, const Dims& out_strides, const void* a, const Dims& a_strides, double p,
                DType dtype, Device dev);
// out (stride 0 on reduced dims) += sum of a.
void sum_reduce(const Dims& shape, void* out, const Dims& out_strides, const void* a, const Dims& a_strides,
                DType dtype, Device dev);
// F32, F64, BF16 (value rounded to nearest even), I64.
void fill(const Dims& shape, void* out, const Dims& out_strides, double value, DType dtype, Device dev);
// Any dtype pair, strided on both sides (Tensor::copy_ on one device).
void copy_convert(const Dims& shape, void* dst, DType dst_dtype, const Dims& dst_strides, const void* src,
                  DType src_dtype, const Dims& src_strides, Device dev);

// ---- GEMM through cuBLAS, row-major: c (M, N; ldc) = alpha · op(a) · op(b) + beta · c, where a
// transposed means it is stored as (K, M) with leading dimension lda (likewise b as (N, K)).
// F32 runs in TF32 only when peft::cuda::allow_tf32() is on; BF16 / F16 accumulate in F32.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const void* a, int64_t lda,
          const void* b, int64_t ldb, double beta, void* c, int64_t ldc, DType dtype, Device dev);
// The same product with what one cublasGemmEx call cannot do (kernels/cuda/gemm_lt.cuh):
//   d (M, N; ldd) = alpha · op(a) · op(b) + beta · c_in (M, N; ldc_in) + bias (N; null: none),
// c_in may be d itself or another buffer, and d (with c_in and bias) may be F32 while a, b are
// `dtype` (BF16 / F16), given as out_dtype. cuBLASLt with the bias in the epilogue when it has an
// algorithm; otherwise cublasGemmEx after copying c_in into d, then a bias pass.
void gemm_fused(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const void* a, int64_t lda,
                const void* b, int64_t ldb, double beta, const void* c_in, int64_t ldc_in, void* d, int64_t ldd,
                const void* bias, DType dtype, DType out_dtype, Device dev);
// `batch` contiguous row-major products: a (B, M, K), b (B, K, N), c (B, M, N), c written with =.
void gemm_batched(int64_t batch, int64_t M, int64_t N, int64_t K, const void* a, const void* b, void* c, DType dtype,
                  Device dev);

// ---- softmax / losses (contiguous (outer, D, inner))
void softmax_forward(int64_t outer, int64_t D, int64_t inner, const void* x, void* y, bool log, DType dtype,
                     Device dev);
void softmax_backward(int64_t outer, int64_t D, int64_t inner, const void* y, const void* dy, void* dx, bool log,
                      DType dtype, Device dev);
// Targets are validated by the caller (core reads them on the host to count them).
void nll_loss_forward(int64_t N, int64_t C, const void* logp, const int64_t* target, int64_t ignore_index, void* per,
                      DType dtype, Device dev);
void nll_loss_backward(int64_t N, int64_t C, const int64_t* target, int64_t ignore_index, const void* g, bool reduced,
                       double factor, void* dlogp, DType dtype, Device dev);

// ---- embedding. Forward checks the ids in the kernel and synchronises to report the first
// bad one (kernels/cuda/index_check.cuh): "embedding: index 7 at position 2 is out of range
// for 5 rows". Backward trusts ids that forward has checked.
void embedding_forward(int64_t n, int64_t dim, int64_t V, const void* weight, const int64_t* ids, void* out,
                       DType dtype, Device dev);
void embedding_backward(int64_t n, int64_t dim, int64_t V, const int64_t* ids, const void* dy, void* dw,
                        int64_t padding_idx, DType dtype, Device dev);

// ---- norms (null w / b: 1 / 0; null dx / dw / db: skipped; mean / rstd F32 for BF16 data)
void layer_norm_forward(int64_t R, int64_t M, double eps, const void* x, const void* w, const void* b, void* y,
                        void* mean, void* rstd, DType dtype, Device dev);
void layer_norm_backward(int64_t R, int64_t M, const void* x, const void* w, const void* mean, const void* rstd,
                         const void* dy, void* dx, void* dw, void* db, DType dtype, Device dev);
void group_norm_forward(int64_t N, int64_t C, int64_t S, int64_t G, double eps, const void* x, const void* w,
                        const void* b, void* y, void* mean, void* rstd, DType dtype, Device dev);
void group_norm_backward(int64_t N, int64_t C, int64_t S, int64_t G, const void* x, const void* w, const void* mean,
                         const void* rstd, const void* dy, void* dx, void* dw, void* db, DType dtype, Device dev);

// ---- pooling (NCHW contiguous; s from kernels::cpu::pool2d_shape)
void avg_pool2d_forward(const kernels::cpu::Pool2dShape& s, const void* x, void* y, DType dtype, Device dev);
void avg_pool2d_backward(const kernels::cpu::Pool2dShape& s, const void* dy, void* dx, DType dtype, Device dev);

// ---- conv2d (NCHW contiguous; s from kernels::cpu::conv2d_shape with Ho, Wo > 0), PyTorch's
// semantics (cross-correlation, zero padding, stride, dilation, groups). Through cuDNN when
// built with it and peft::cuda::cudnn_enabled(), F32 in TF32 only when allow_tf32(); through the
// direct kernels of kernels/cuda/conv.cuh otherwise or when cuDNN refuses the shape.
// Null b: no bias. Backward: each of dx, dw, db may be null (not wanted); those given are
// written with =; x is read only for dw, w only for dx.
void conv2d_forward(const kernels::cpu::Conv2dShape& s, const void* x, const void* w, const void* b, void* y,
                    DType dtype, Device dev);
void conv2d_backward(const kernels::cpu::Conv2dShape& s, const void* x, const void* w, const void* dy, void* dx,
                     void* dw, void* db, DType dtype, Device dev);

// ---- max over the last dim of contiguous rows (nrows, n), n >= 1: values and the first argmax,
// NaN counting as the largest (the CPU rule). F32 / F64.
void max_lastdim(int64_t nrows, int64_t n, const void* x, void* values, int64_t* indices, DType dtype, Device dev);
// gi (outer, n, inner), zeroed by the caller: gi[p, idx[r], q] = gv[r] for r = p·inner + q.
void max_backward_scatter(int64_t outer, int64_t n, int64_t inner, const int64_t* idx, const void* gv, void* gi,
                          DType dtype, Device dev);

// ---- multi-adapter LoRA for serving (kernels/cuda/lora_multi.cuh): out = y + per-row adapter
// branch. `table`: device memory holding kernels::cuda::LoraMultiEntry records (four int64 words:
// A pointer, B pointer, r, scale as double bits); rows: (N) device adapter ids, -1 = none; u:
// scratch of N·r_max elements, F64 when x is F64, F32 otherwise. x dtype F32 / F64 / BF16; y F32,
// F64 or BF16 (x F32 with y F64 or BF16 for adapters upcast by autocast_adapter_dtype).
void lora_multi_add(int64_t N, int64_t in, int64_t out, int64_t r_max, const void* x, DType x_dtype, const void* y,
                    void* out_y, DType y_dtype, const int64_t* rows, const void* table, void* u, Device dev);

// ---- the fused LoRA linear (kernels/cuda/lora_fused.cu on kernels/cuda/tc_gemm.cuh's tensor-core
// GEMM): lora_linear's forward and backward with the low-rank terms in the base products'
// accumulators. Contiguous row-major x (N, in), W (out, in), b (out) or null, A (r, in), B (out, r),
// y / dy (N, out), all of `dtype`: BF16, or F32 run on TF32 tensor cores (F32 accumulation
// throughout). us (N, r) and dU (N, r) are scratch of `dtype`: forward writes us = s·dropout(x)·Aᵀ,
// backward reads it (for dB) and writes dU = s·dY·B. Dropout p in [0, 1): element n·in + k of x
// is kept by the Philox decision of stream (seed, offset 0) — kernels/cuda/dropout.cuh's mask,
// regenerated in every kernel that needs it. Null dx / dA / dB: not computed (dU only when dA or
// dx is asked for).
void lora_fused_forward(int64_t N, int64_t in, int64_t out, int64_t r, const void* x, const void* w, const void* b,
                        const void* A, const void* B, double scale, double p, uint64_t seed, void* us, void* y,
                        DType dtype, Device dev);
void lora_fused_backward(int64_t N, int64_t in, int64_t out, int64_t r, const void* dy, const void* x, const void* w,
                         const void* A, const void* B, const void* us, double scale, double p, uint64_t seed,
                         void* dU, void* dx, void* dA, void* dB, DType dtype, Device dev);

// ---- dropout with a Philox mask regenerated from (seed, offset) (kernels/cuda/dropout.cuh)
void dropout_forward(int64_t n, double p, uint64_t seed, uint64_t offset, const void* x, void* y, DType dtype,
                     Device dev);
void dropout_backward(int64_t n, double p, uint64_t seed, uint64_t offset, const void* dy, void* dx, DType dtype,
                      Device dev);

// ---- the fused LSTM cell of one time step (kernels/cuda/lstm_cell.cuh, defined in
// kernels/cuda/lstm_bridge.cu): gates (B, 4H) in PyTorch's order i, f, g, o; state (B, H).
// Forward saves act (B, 4H) and tanh_c (B, H) for backward. Null gates_h / c_prev / dh / dc
// read as zeros; null dc_prev is not written. F32 / F64.
void lstm_cell_forward(int64_t B, int64_t H, const void* gates_x, const void* gates_h, const void* c_prev, void* h,
                       void* c, void* act, void* tanh_c, DType dtype, Device dev);
void lstm_cell_backward(int64_t B, int64_t H, const void* act, const void* tanh_c, const void* c_prev, const void* dh,
                        const void* dc, void* dgates, void* dc_prev, DType dtype, Device dev);

// ---- one fused Adam / AdamW step over parameters sharing a device and dtype
struct AdamParam {
  void* param;
  const void* grad;
  void* exp_avg;
  void* exp_avg_sq;
  int64_t n;
  int64_t step;  // including this update
};
void adam_step(const std::vector<AdamParam>& params, double lr, double beta1, double beta2, double eps,
               double weight_decay, bool decoupled, DType dtype, Device dev);

}  // namespace peft::cuda_ops
