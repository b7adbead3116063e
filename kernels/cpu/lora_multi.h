// kernels/cpu/lora_multi.h — multi-adapter LoRA for serving (Punica's BGMV): every row of a batch
// has its own adapter. The CPU reference for kernels/cuda/lora_multi.cuh.
#pragma once

#include <cstdint>

namespace peft::kernels::cpu {

// One adapter's weights, contiguous, in the x dtype T: A (r, in) and B (out, r), scale s.
struct LoraMultiAdapter {
  const void* A;
  const void* B;
  int64_t r;
  double scale;
};

// out[n] = y[n] + Y(s_a · (x[n]·A_aᵀ)·B_aᵀ) for a = row_adapter[n] in [0, n_adapters), and
// out[n] = y[n] for a = -1 (validated by the caller). The low-rank product accumulates in T and
// is rounded to Y once before the add, as PEFT's `result[rows] += lora_output.to(dtype)`.
// out may alias y.
template <class T, class Y>
void lora_multi_add(int64_t N, int64_t in, int64_t out,
                    const T* x,                         // (N, in)
                    const Y* y,                         // (N, out)
                    Y* out_y,                           // (N, out)
                    const int64_t* row_adapter,         // (N)
                    const LoraMultiAdapter* adapters);  // (n_adapters)

}  // namespace peft::kernels::cpu
