// kernels/cuda/lora_multi_bridge.cu — core/cuda_ops.h's lora_multi_add: the (x dtype, y dtype)
// pair picks the kernel instantiation of kernels/cuda/lora_multi.cuh.
#include <cuda_bf16.h>

#include <cstdint>

#include "core/cuda_ops.h"
#include "core/error.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/lora_multi.cuh"

namespace peft::cuda_ops {

namespace {
static_assert(sizeof(kernels::cuda::LoraMultiEntry) == 4 * sizeof(int64_t),
              "core writes LoraMultiEntry as four int64 words");

template <class T, class Y>
void run(int64_t N, int64_t in, int64_t out, int64_t r_max, const void* x, const void* y, void* out_y,
         const int64_t* rows, const void* table, void* u, cudaStream_t stream) {
  kernels::cuda::lora_multi_add<T, Y>(N, in, out, r_max, static_cast<const T*>(x), static_cast<const Y*>(y),
                                      static_cast<Y*>(out_y), rows,
                                      static_cast<const kernels::cuda::LoraMultiEntry*>(table), u, stream);
}
}  // namespace

void lora_multi_add(int64_t N, int64_t in, int64_t out, int64_t r_max, const void* x, DType xt, const void* y,
                    void* out_y, DType yt, const int64_t* rows, const void* table, void* u, Device dev) {
  detail::Launch l(dev);
  using bf16 = __nv_bfloat16;
  auto go = [&](auto t, auto yv) {
    run<decltype(t), decltype(yv)>(N, in, out, r_max, x, y, out_y, rows, table, u, l.stream);
  };
  if (xt == DType::F32 && yt == DType::F32) return go(float{}, float{});
  if (xt == DType::F64 && yt == DType::F64) return go(double{}, double{});
  if (xt == DType::F32 && yt == DType::F64) return go(float{}, double{});
  if (xt == DType::F32 && yt == DType::BF16) return go(float{}, bf16{});
  if (xt == DType::BF16 && yt == DType::BF16) return go(bf16{}, bf16{});
  PEFT_ERROR("lora_multi: unsupported dtypes on CUDA: adapters ", dtype_name(xt), ", output ", dtype_name(yt),
             " (supported: F32/F32, F64/F64, F32/F64, F32/BF16, BF16/BF16)");
}

}  // namespace peft::cuda_ops
