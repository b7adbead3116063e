// kernels/cuda/lora_fused.cu — core/cuda_ops.h's fused LoRA linear: the lora_linear op's forward
// and backward as tensor-core GEMMs (kernels/cuda/tc_gemm.cuh) with the low-rank terms folded
// into the base products' accumulators and the dropout mask regenerated from Philox.
//
// Forward (2 launches):  us = s·dropout(x)·Aᵀ          (N, r) scratch in x's dtype, mask applied on load
//                        y  = x·Wᵀ + us·Bᵀ + b          one accumulator, two K segments, y written once
// Backward (≤ 4):        dB  = dYᵀ·us                   (out, r)
//                        dU  = s·dY·B                   (N, r) scratch in x's dtype, shared by dA and dX
//                        dA  = dUᵀ·dropout(x)           (r, in), mask applied on load
//                        dX  = mask ⊙ (dU·A) + dY·W     the masked term is segment 0 (mask_result),
//                                                       dY·W accumulates after it: dX written once
// The scratch is in x's dtype (BF16 rounds the low-rank intermediate as PEFT's BF16 layers do) so
// that the two big products — y and dX, 2·N·in·out FLOPs each — read only operands that need no
// conversion and take tc_gemm's pipelined kernel (when leading dimensions are multiples of 16
// bytes).
// dW / db are not here: W is frozen in LoRA training; core/ops_lora.cpp computes them through
// cuBLAS when they are asked for. dB and dU are two passes over dY (the issue asks for one;
// a later tuning step).
#include <algorithm>
#include <cstdint>

#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "core/error.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tc_gemm.cuh"

namespace peft::cuda_ops {

namespace {

using kernels::cuda::TcDropout;
using kernels::cuda::TcEpilogue;
using kernels::cuda::TcMath;
using kernels::cuda::TcOperand;
using kernels::cuda::TcSegment;

struct Setup {
  TcMath math;
  bool bf16;  // element type of x, W, b, A, B, y and of the gradients
};

Setup setup(DType dtype) {
  if (dtype == DType::BF16) return {TcMath::BF16, true};
  PEFT_CHECK(dtype == DType::F32, "lora_linear (fused CUDA kernels): dtype ", dtype_name(dtype),
             " is not supported (BF16, or F32 with TF32 tensor cores)");
  return {TcMath::TF32, false};
}

void check_sizes(int64_t N, int64_t in, int64_t out, int64_t r, double p) {
  PEFT_CHECK(N >= 0 && in >= 0 && out >= 0 && r >= 0, "lora_linear (fused CUDA kernels): negative size N ", N,
             ", in ", in, ", out ", out, ", r ", r);
  PEFT_CHECK(p >= 0 && p < 1, "lora_linear (fused CUDA kernels): dropout probability must be in [0, 1), got ", p);
}

// An operand of one dtype: element (i, k) at i·ld + k (k_inner) or k·ld + i.
TcOperand operand(const void* ptr, bool bf16, int64_t ld, bool k_inner, float scale = 1.f, bool dropout = false) {
  TcOperand o;
  o.ptr = ptr;
  o.bf16 = bf16;
  o.ld = ld;
  o.k_inner = k_inner;
  o.scale = scale;
  o.dropout = dropout;
  return o;
}

TcEpilogue epilogue(void* out, bool bf16, int64_t ldc, float alpha = 1.f, const void* bias = nullptr) {
  TcEpilogue e;
  e.out = out;
  e.out_bf16 = bf16;
  e.ldc = ldc;
  e.alpha = alpha;
  e.bias = bias;
  e.bias_bf16 = bf16;
  return e;
}

// F32 scratch for tc_gemm's split-K partial sums (dA and dB: K = the batch, few output tiles),
// from the device's caching allocator; freed blocks are reused in stream order, so releasing it
// right after queuing the launches is safe.
class SplitWorkspace {
 public:
  // Split-K is optional: when the allocation fails, the products run unsplit (get() is null).
  SplitWorkspace(Device dev, size_t bytes) : dev_(dev) {
    try {
      p_ = cuda::device_alloc(dev, bytes);
      bytes_ = bytes;
    } catch (const Error&) {
      p_ = nullptr;
    }
  }
  ~SplitWorkspace() {
    if (p_) cuda::device_free(dev_, p_);
  }
  SplitWorkspace(const SplitWorkspace&) = delete;
  SplitWorkspace& operator=(const SplitWorkspace&) = delete;
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  Device dev_;
  size_t bytes_ = 0;
  void* p_ = nullptr;
};

}  // namespace

void lora_fused_forward(int64_t N, int64_t in, int64_t out, int64_t r, const void* x, const void* w, const void* b,
                        const void* A, const void* B, double scale, double p, uint64_t seed, void* us, void* y,
                        DType dtype, Device dev) {
  check_sizes(N, in, out, r, p);
  const Setup st = setup(dtype);
  detail::Launch l(dev);
  const TcDropout drop{p, seed, 0};
  if (r > 0) {  // us = s·dropout(x)·Aᵀ
    TcSegment shrink;
    shrink.a = operand(x, st.bf16, in, true, 1.f, p > 0);
    shrink.b = operand(A, st.bf16, in, true);
    shrink.K = in;
    kernels::cuda::tc_gemm(st.math, N, r, &shrink, 1, drop, epilogue(us, st.bf16, r, static_cast<float>(scale)),
                           l.stream);
  }
  TcSegment segs[2];
  segs[0].a = operand(x, st.bf16, in, true);
  segs[0].b = operand(w, st.bf16, in, true);
  segs[0].K = in;
  segs[1].a = operand(us, st.bf16, r, true);
  segs[1].b = operand(B, st.bf16, r, true);
  segs[1].K = r;
  kernels::cuda::tc_gemm(st.math, N, out, segs, 2, drop, epilogue(y, st.bf16, out, 1.f, b), l.stream);
}

void lora_fused_backward(int64_t N, int64_t in, int64_t out, int64_t r, const void* dy, const void* x, const void* w,
                         const void* A, const void* B, const void* us, double scale, double p, uint64_t seed,
                         void* dU, void* dx, void* dA, void* dB, DType dtype, Device dev) {
  check_sizes(N, in, out, r, p);
  const Setup st = setup(dtype);
  detail::Launch l(dev);
  const TcDropout drop{p, seed, 0};
  const float s = static_cast<float>(scale);
  // Up to 8 splits of the larger of dA (r, in) and dB (out, r).
  SplitWorkspace ws(dev, (dA || dB) ? 8 * static_cast<size_t>(std::max(r * in, out * r)) * sizeof(float) : 0);
  if (dB) {  // dB[o, j] = Σ_n dY[n, o] · us[n, j]
    TcSegment seg;
    seg.a = operand(dy, st.bf16, out, false);
    seg.b = operand(us, st.bf16, r, false);
    seg.K = N;
    kernels::cuda::tc_gemm(st.math, out, r, &seg, 1, drop, epilogue(dB, st.bf16, r), l.stream, ws.get(), ws.bytes());
  }
  if (dA || dx) {  // dU[n, j] = s · Σ_o dY[n, o] · B[o, j]
    TcSegment seg;
    seg.a = operand(dy, st.bf16, out, true);
    seg.b = operand(B, st.bf16, r, false);
    seg.K = out;
    kernels::cuda::tc_gemm(st.math, N, r, &seg, 1, drop, epilogue(dU, st.bf16, r, s), l.stream);
  }
  if (dA) {  // dA[j, i] = Σ_n dU[n, j] · dropout(x)[n, i]
    TcSegment seg;
    seg.a = operand(dU, st.bf16, r, false);
    seg.b = operand(x, st.bf16, in, false, 1.f, p > 0);
    seg.K = N;
    kernels::cuda::tc_gemm(st.math, r, in, &seg, 1, drop, epilogue(dA, st.bf16, in), l.stream, ws.get(), ws.bytes());
  }
  if (dx) {  // dX[n, i] = keep(n·in + i) / (1 − p) · Σ_j dU[n, j] · A[j, i] + Σ_o dY[n, o] · W[o, i]
    TcSegment segs[2];
    segs[0].a = operand(dU, st.bf16, r, true);
    segs[0].b = operand(A, st.bf16, in, false);
    segs[0].K = r;
    segs[0].mask_result = p > 0;
    segs[1].a = operand(dy, st.bf16, out, true);
    segs[1].b = operand(w, st.bf16, in, false);
    segs[1].K = out;
    kernels::cuda::tc_gemm(st.math, N, in, segs, 2, drop, epilogue(dx, st.bf16, in), l.stream);
  }
}

}  // namespace peft::cuda_ops
