// kernels/cuda/adamw.cu — the multi-tensor fused Adam / AdamW step.
//
// Tensors are packed, up to kAdamTensorsPerLaunch at a time, into a by-value kernel argument
// (pointers, sizes, per-tensor bias-corrected step sizes: ~2 KB, under the 4 KB parameter limit
// of every toolkit), with a prefix sum of per-tensor block counts. Each block finds its tensor by
// a short linear scan and updates one chunk of kChunk contiguous elements, so a launch covers many
// small LoRA tensors at once without a device-side pointer table to allocate. Scalars are
// converted to T on the host exactly as core/optim.cpp does, and the per-element expression keeps
// its order, so the only GPU/CPU difference is nvcc's fused multiply-adds.
#include "kernels/cuda/adamw.cuh"

#include <cmath>

#include "core/error.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device_utils.cuh"

namespace peft::kernels::cuda {

namespace {

constexpr int kAdamThreads = 256;
constexpr int64_t kChunk = kAdamThreads * 4;  // elements per block
// Blocks per launch stay far below gridDim.x's 2^31 - 1 limit.
constexpr int64_t kMaxBlocksPerLaunch = int64_t(1) << 30;

template <class T>
struct AdamBatch {
  int count;
  T* p[kAdamTensorsPerLaunch];
  const T* g[kAdamTensorsPerLaunch];
  T* m[kAdamTensorsPerLaunch];
  T* v[kAdamTensorsPerLaunch];
  int64_t n[kAdamTensorsPerLaunch];
  T step_size[kAdamTensorsPerLaunch];     // lr / bc1
  T inv_bc2_sqrt[kAdamTensorsPerLaunch];  // 1 / sqrt(bc2)
  int64_t block_start[kAdamTensorsPerLaunch + 1];
};

template <class T>
struct AdamScalars {
  T b1, b2, eps, wd, decay;  // decay = 1 - lr * wd
  bool decoupled;
};

// ---------------------------------------------------------------------------- kernel

template <class T>
__global__ void adam_kernel(AdamBatch<T> batch, AdamScalars<T> s) {
  const int64_t blk = blockIdx.x;
  int t = 0;
  while (t + 1 < batch.count && blk >= batch.block_start[t + 1]) ++t;
  const int64_t begin = (blk - batch.block_start[t]) * kChunk;
  const int64_t end = min(begin + kChunk, batch.n[t]);
  T* w = batch.p[t];
  const T* gp = batch.g[t];
  T* m = batch.m[t];
  T* v = batch.v[t];
  const T step_size = batch.step_size[t], inv_bc2_sqrt = batch.inv_bc2_sqrt[t];
  for (int64_t k = begin + threadIdx.x; k < end; k += blockDim.x) {
    T gk = gp[k];
    T wk = w[k];
    if (s.decoupled) wk *= s.decay;
    else gk += s.wd * wk;
    const T mk = s.b1 * m[k] + (1 - s.b1) * gk;
    const T vk = s.b2 * v[k] + (1 - s.b2) * gk * gk;
    m[k] = mk;
    v[k] = vk;
    w[k] = wk - step_size * mk / (detail::dsqrt(vk) * inv_bc2_sqrt + s.eps);
  }
}

template <class T>
void launch_batch(AdamBatch<T>& batch, const AdamScalars<T>& s, cudaStream_t stream) {
  if (batch.count == 0) return;
  const int64_t blocks = batch.block_start[batch.count];
  adam_kernel<T><<<static_cast<unsigned>(blocks), kAdamThreads, 0, stream>>>(batch, s);
  PEFT_KERNEL_CHECK();
  batch.count = 0;
  batch.block_start[0] = 0;
}

}  // namespace

// ---------------------------------------------------------------------------- launcher

template <class T>
void adam_step(const std::vector<AdamTensor<T>>& tensors, const AdamHyper& h, cudaStream_t stream) {
  const char* name = h.decoupled ? "cuda AdamW" : "cuda Adam";
  PEFT_CHECK(h.lr >= 0, name, ": invalid learning rate ", h.lr);
  PEFT_CHECK(h.eps >= 0, name, ": invalid epsilon value ", h.eps);
  PEFT_CHECK(h.beta1 >= 0 && h.beta1 < 1, name, ": invalid beta parameter at index 0: ", h.beta1);
  PEFT_CHECK(h.beta2 >= 0 && h.beta2 < 1, name, ": invalid beta parameter at index 1: ", h.beta2);
  PEFT_CHECK(h.weight_decay >= 0, name, ": invalid weight_decay value ", h.weight_decay);
  const AdamScalars<T> s{static_cast<T>(h.beta1), static_cast<T>(h.beta2), static_cast<T>(h.eps),
                         static_cast<T>(h.weight_decay), static_cast<T>(1 - h.lr * h.weight_decay), h.decoupled};
  AdamBatch<T> batch{};
  batch.count = 0;
  batch.block_start[0] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamTensor<T>& a = tensors[i];
    PEFT_CHECK(a.n >= 0, name, ": tensor ", i, " has negative size ", a.n);
    PEFT_CHECK(a.step >= 1, name, ": tensor ", i, " has step ", a.step, "; the first update is step 1");
    if (a.n == 0) continue;
    PEFT_CHECK(a.param != nullptr && a.grad != nullptr && a.exp_avg != nullptr && a.exp_avg_sq != nullptr, name,
               ": tensor ", i, " has a null device pointer");
    const int64_t nblocks = (a.n + kChunk - 1) / kChunk;
    PEFT_CHECK(nblocks <= kMaxBlocksPerLaunch, name, ": tensor ", i, " has ", a.n,
               " elements, more than one launch takes");
    if (batch.count == kAdamTensorsPerLaunch || batch.block_start[batch.count] + nblocks > kMaxBlocksPerLaunch)
      launch_batch(batch, s, stream);
    // Bias corrections in double, then converted to T, as core/optim.cpp.
    const double bc1 = 1 - std::pow(h.beta1, static_cast<double>(a.step));
    const double bc2_sqrt = std::sqrt(1 - std::pow(h.beta2, static_cast<double>(a.step)));
    const int c = batch.count;
    batch.p[c] = a.param;
    batch.g[c] = a.grad;
    batch.m[c] = a.exp_avg;
    batch.v[c] = a.exp_avg_sq;
    batch.n[c] = a.n;
    batch.step_size[c] = static_cast<T>(h.lr / bc1);
    batch.inv_bc2_sqrt[c] = static_cast<T>(1.0 / bc2_sqrt);
    batch.block_start[c + 1] = batch.block_start[c] + nblocks;
    batch.count = c + 1;
  }
  launch_batch(batch, s, stream);
}

template void adam_step<float>(const std::vector<AdamTensor<float>>&, const AdamHyper&, cudaStream_t);
template void adam_step<double>(const std::vector<AdamTensor<double>>&, const AdamHyper&, cudaStream_t);

}  // namespace peft::kernels::cuda
