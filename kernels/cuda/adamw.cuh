// kernels/cuda/adamw.cuh — one fused Adam / AdamW step over a list of parameters (multi-tensor:
// one launch per up to kAdamTensorsPerLaunch tensors instead of one per tensor), with exactly
// core/optim.cpp's per-element update (PyTorch's formula: bias corrections, decoupled weight
// decay for AdamW, amsgrad = false, maximize = false):
//   AdamW: w *= 1 - lr * wd              Adam: g += wd * w
//   m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g * g
//   w -= (lr / bc1) * m / (sqrt(v) * (1 / sqrt(bc2)) + eps),   bc_i = 1 - beta_i^step
// Device pointers in host-side descriptors; the launcher queues on `stream` without syncing.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace peft::kernels::cuda {

constexpr int kAdamTensorsPerLaunch = 24;

template <class T>
struct AdamTensor {
  T* param;          // (n) updated in place
  const T* grad;     // (n)
  T* exp_avg;        // (n) updated in place; zeros before the first step
  T* exp_avg_sq;     // (n) updated in place; zeros before the first step
  int64_t n;
  int64_t step;      // this tensor's step count including this update (1 on the first), as Adam::steps_
};

struct AdamHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
  bool decoupled = true;  // true: AdamW; false: Adam (L2 added to the gradient)
};

template <class T>
void adam_step(const std::vector<AdamTensor<T>>& tensors, const AdamHyper& h, cudaStream_t stream);

}  // namespace peft::kernels::cuda
