// core/cuda_api.h and core/cuda_ops.h in a build without the CUDA backend: every entry point
// refuses clearly, except host-to-host copies, which need no GPU. Ops only reach the cuda_ops
// kernels with a tensor labelled as a CUDA device, which such a build cannot allocate, so those
// are a last line of defence. (With PEFT_WITH_CUDA, kernels/cuda/memory.cu, gemm.cu and
// ops_bridge.cu define these instead.)
#ifndef PEFT_WITH_CUDA
#include "core/cuda_api.h"
#include "core/cuda_ops.h"

#include <cstring>

#include "core/error.h"

namespace peft::cuda {

namespace {
[[noreturn]] void unavailable(const char* what, Device device) {
  PEFT_ERROR(what, ": ", device.str(), ": CUDA is not available in this build (configured with PEFT_CUDA=OFF "
             "or without nvcc)");
}
}  // namespace

void empty_cache(Device device) { unavailable("empty_cache", device); }
AllocatorStats memory_stats(Device device) { unavailable("memory_stats", device); }
void reset_peak_memory_stats(Device device) { unavailable("reset_peak_memory_stats", device); }
void synchronize(Device device) { unavailable("synchronize", device); }
void* device_alloc(Device device, size_t) { unavailable("allocate", device); }
void device_free(Device device, void*) { unavailable("free", device); }
void device_memset_zero(void*, Device device, size_t) { unavailable("memset", device); }
void* event_record(Device device) { unavailable("event_record", device); }
float event_elapsed_ms(void*, void*) { unavailable("event_elapsed_ms", Device::cuda(0)); }
void event_destroy(void*) noexcept {}
int cudnn_version() { return 0; }  // a query, not an operation: no refusal

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    if (nbytes > 0) std::memcpy(dst, src, nbytes);
    return;
  }
  unavailable("copy", dst_device.is_cuda() ? dst_device : src_device);
}

}  // namespace peft::cuda

namespace peft::cuda_ops {

void unary(UnaryOp, const Dims&, void*, const Dims&, const void*, const Dims&, DType, Device dev) {
  cuda::unavailable("unary", dev);
}
void binary(BinaryOp, const Dims&, void*, const Dims&, const void*, const Dims&, const void*, const Dims&, DType,
            Device dev) {
  cuda::unavailable("binary", dev);
}
void affine(const Dims&, void*, const Dims&, const void*, const Dims&, double, double, DType, Device dev) {
  cuda::unavailable("affine", dev);
}
void pow_scalar(const Dims&, void*, const Dims&, const void*, const Dims&, double, DType, Device dev) {
  cuda::unavailable("pow", dev);
}
void sum_reduce(const Dims&, void*, const Dims&, const void*, const Dims&, DType, Device dev) {
  cuda::unavailable("sum", dev);
}
void fill(const Dims&, void*, const Dims&, double, DType, Device dev) { cuda::unavailable("fill_", dev); }
void copy_convert(const Dims&, void*, DType, const Dims&, const void*, DType, const Dims&, Device dev) {
  cuda::unavailable("copy_", dev);
}
void gemm(bool, bool, int64_t, int64_t, int64_t, double, const void*, int64_t, const void*, int64_t, double, void*,
          int64_t, DType, Device dev) {
  cuda::unavailable("matmul", dev);
}
void gemm_fused(bool, bool, int64_t, int64_t, int64_t, double, const void*, int64_t, const void*, int64_t, double,
                const void*, int64_t, void*, int64_t, const void*, DType, DType, Device dev) {
  cuda::unavailable("linear", dev);
}
void gemm_batched(int64_t, int64_t, int64_t, int64_t, const void*, const void*, void*, DType, Device dev) {
  cuda::unavailable("matmul", dev);
}
void softmax_forward(int64_t, int64_t, int64_t, const void*, void*, bool, DType, Device dev) {
  cuda::unavailable("softmax", dev);
}
void softmax_backward(int64_t, int64_t, int64_t, const void*, const void*, void*, bool, DType, Device dev) {
  cuda::unavailable("softmax_backward", dev);
}
void nll_loss_forward(int64_t, int64_t, const void*, const int64_t*, int64_t, void*, DType, Device dev) {
  cuda::unavailable("nll_loss", dev);
}
void nll_loss_backward(int64_t, int64_t, const int64_t*, int64_t, const void*, bool, double, void*, DType, Device dev) {
  cuda::unavailable("nll_loss_backward", dev);
}
void embedding_forward(int64_t, int64_t, int64_t, const void*, const int64_t*, void*, DType, Device dev) {
  cuda::unavailable("embedding", dev);
}
void embedding_backward(int64_t, int64_t, int64_t, const int64_t*, const void*, void*, int64_t, DType, Device dev) {
  cuda::unavailable("embedding_backward", dev);
}
void layer_norm_forward(int64_t, int64_t, double, const void*, const void*, const void*, void*, void*, void*, DType,
                        Device dev) {
  cuda::unavailable("layer_norm", dev);
}
void layer_norm_backward(int64_t, int64_t, const void*, const void*, const void*, const void*, const void*, void*,
                         void*, void*, DType, Device dev) {
  cuda::unavailable("layer_norm_backward", dev);
}
void group_norm_forward(int64_t, int64_t, int64_t, int64_t, double, const void*, const void*, const void*, void*, void*,
                        void*, DType, Device dev) {
  cuda::unavailable("group_norm", dev);
}
void group_norm_backward(int64_t, int64_t, int64_t, int64_t, const void*, const void*, const void*, const void*,
                         const void*, void*, void*, void*, DType, Device dev) {
  cuda::unavailable("group_norm_backward", dev);
}
void avg_pool2d_forward(const kernels::cpu::Pool2dShape&, const void*, void*, DType, Device dev) {
  cuda::unavailable("avg_pool2d", dev);
}
void avg_pool2d_backward(const kernels::cpu::Pool2dShape&, const void*, void*, DType, Device dev) {
  cuda::unavailable("avg_pool2d_backward", dev);
}
void conv2d_forward(const kernels::cpu::Conv2dShape&, const void*, const void*, const void*, void*, DType,
                    Device dev) {
  cuda::unavailable("conv2d", dev);
}
void conv2d_backward(const kernels::cpu::Conv2dShape&, const void*, const void*, const void*, void*, void*, void*,
                     DType, Device dev) {
  cuda::unavailable("conv2d_backward", dev);
}
void max_lastdim(int64_t, int64_t, const void*, void*, int64_t*, DType, Device dev) { cuda::unavailable("max", dev); }
void max_backward_scatter(int64_t, int64_t, int64_t, const int64_t*, const void*, void*, DType, Device dev) {
  cuda::unavailable("max_backward", dev);
}
void lora_multi_add(int64_t, int64_t, int64_t, int64_t, const void*, DType, const void*, void*, DType, const int64_t*,
                    const void*, void*, Device dev) {
  cuda::unavailable("lora_multi", dev);
}
void lora_fused_forward(int64_t, int64_t, int64_t, int64_t, const void*, const void*, const void*, const void*,
                        const void*, double, double, uint64_t, void*, void*, DType, Device dev) {
  cuda::unavailable("lora_linear (fused)", dev);
}
void lora_fused_backward(int64_t, int64_t, int64_t, int64_t, const void*, const void*, const void*, const void*,
                         const void*, const void*, double, double, uint64_t, void*, void*, void*, void*, DType,
                         Device dev) {
  cuda::unavailable("lora_linear (fused)", dev);
}
void dropout_forward(int64_t, double, uint64_t, uint64_t, const void*, void*, DType, Device dev) {
  cuda::unavailable("dropout", dev);
}
void dropout_backward(int64_t, double, uint64_t, uint64_t, const void*, void*, DType, Device dev) {
  cuda::unavailable("dropout_backward", dev);
}
void lstm_cell_forward(int64_t, int64_t, const void*, const void*, const void*, void*, void*, void*, void*, DType,
                       Device dev) {
  cuda::unavailable("lstm_cell", dev);
}
void lstm_cell_backward(int64_t, int64_t, const void*, const void*, const void*, const void*, const void*, void*,
                        void*, DType, Device dev) {
  cuda::unavailable("lstm_cell_backward", dev);
}
void adam_step(const std::vector<AdamParam>&, double, double, double, double, double, bool, DType, Device dev) {
  cuda::unavailable("adam_step", dev);
}

}  // namespace peft::cuda_ops
#endif
