// kernels/cuda/lora_multi.cuh — multi-adapter LoRA for serving, Punica-style BGMV: every row of
// a batch has its own adapter, the adapters' weights stay where they are (a device table of
// pointers, no stacking copy), and one shrink + one expand launch serve any number of adapters.
// The GPU twin of kernels/cpu/lora_multi.h. Device pointers; launchers queue on `stream`.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace peft::kernels::cuda {

// One adapter, as the device reads it (32 bytes; core writes it as four int64 words): A (r, in)
// and B (out, r), contiguous, in the x dtype; the scale as a double.
struct LoraMultiEntry {
  const void* A;
  const void* B;
  int64_t r;
  double scale;
};

// out[n] = y[n] + Y(s_a·(x[n]·A_aᵀ)·B_aᵀ) for a = rows[n] >= 0; out[n] = y[n] for a = -1.
// u is scratch for the shrink result, (N, r_max) in Acc = double for T = double, float
// otherwise (products accumulate in Acc). T ∈ {float, double, __nv_bfloat16}; Y ∈ {T, and
// __nv_bfloat16 / double for T = float}. out may alias y. Adapter ids must be valid (checked by
// the caller on the host).
template <class T, class Y>
void lora_multi_add(int64_t N, int64_t in, int64_t out, int64_t r_max,
                    const T* x,                     // (N, in)
                    const Y* y,                     // (N, out)
                    Y* out_y,                       // (N, out)
                    const int64_t* rows,            // (N) adapter per row, -1 = none
                    const LoraMultiEntry* table,    // (n_adapters)
                    void* u,                        // (N, r_max) scratch
                    cudaStream_t stream);

}  // namespace peft::kernels::cuda
