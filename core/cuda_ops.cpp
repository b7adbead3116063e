// The process-wide TF32 switch (any build), and core/cuda_ops.h in a build without the CUDA
// backend: every op kernel refuses clearly. Ops only reach these with a tensor labelled as a
// CUDA device, which such a build cannot allocate, so this is a last line of defence.
#include <atomic>

#include "core/cuda_api.h"
#include "core/cuda_ops.h"
#include "core/error.h"

namespace peft::cuda {

namespace {
std::atomic<bool> g_allow_tf32{false};
}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }

}  // namespace peft::cuda

#ifndef PEFT_WITH_CUDA
namespace peft::cuda_ops {

namespace {
[[noreturn]] void unavailable(const char* what, Device dev) {
  PEFT_ERROR(what, ": ", dev.str(), ": CUDA is not available in this build (configured with PEFT_CUDA=OFF "
             "or without nvcc)");
}
}  // namespace

void unary(UnaryOp, const Dims&, void*, const Dims&, const void*, const Dims&, DType, Device dev) {
  unavailable("unary", dev);
}
void binary(BinaryOp, const Dims&, void*, const Dims&, const void*, const Dims&, const void*, const Dims&, DType,
            Device dev) {
  unavailable("binary", dev);
}
void affine(const Dims&, void*, const Dims&, const void*, const Dims&, double, double, DType, Device dev) {
  unavailable("affine", dev);
}
void pow_scalar(const Dims&, void*, const Dims&, const void*, const Dims&, double, DType, Device dev) {
  unavailable("pow", dev);
}
void sum_reduce(const Dims&, void*, const Dims&, const void*, const Dims&, DType, Device dev) {
  unavailable("sum", dev);
}
void fill(const Dims&, void*, const Dims&, double, DType, Device dev) { unavailable("fill_", dev); }
void copy_convert(const Dims&, void*, DType, const Dims&, const void*, DType, const Dims&, Device dev) {
  unavailable("copy_", dev);
}
void gemm(bool, bool, int64_t, int64_t, int64_t, double, const void*, int64_t, const void*, int64_t, double, void*,
          int64_t, DType, Device dev) {
  unavailable("matmul", dev);
}
void gemm_batched(int64_t, int64_t, int64_t, int64_t, const void*, const void*, void*, DType, Device dev) {
  unavailable("matmul", dev);
}
void softmax_forward(int64_t, int64_t, int64_t, const void*, void*, bool, DType, Device dev) {
  unavailable("softmax", dev);
}
void softmax_backward(int64_t, int64_t, int64_t, const void*, const void*, void*, bool, DType, Device dev) {
  unavailable("softmax_backward", dev);
}
void nll_loss_forward(int64_t, int64_t, const void*, const int64_t*, int64_t, void*, DType, Device dev) {
  unavailable("nll_loss", dev);
}
void nll_loss_backward(int64_t, int64_t, const int64_t*, int64_t, const void*, bool, double, void*, DType, Device dev) {
  unavailable("nll_loss_backward", dev);
}
void embedding_forward(int64_t, int64_t, int64_t, const void*, const int64_t*, void*, DType, Device dev) {
  unavailable("embedding", dev);
}
void embedding_backward(int64_t, int64_t, int64_t, const int64_t*, const void*, void*, int64_t, DType, Device dev) {
  unavailable("embedding_backward", dev);
}
void layer_norm_forward(int64_t, int64_t, double, const void*, const void*, const void*, void*, void*, void*, DType,
                        Device dev) {
  unavailable("layer_norm", dev);
}
void layer_norm_backward(int64_t, int64_t, const void*, const void*, const void*, const void*, const void*, void*,
                         void*, void*, DType, Device dev) {
  unavailable("layer_norm_backward", dev);
}
void group_norm_forward(int64_t, int64_t, int64_t, int64_t, double, const void*, const void*, const void*, void*, void*,
                        void*, DType, Device dev) {
  unavailable("group_norm", dev);
}
void group_norm_backward(int64_t, int64_t, int64_t, int64_t, const void*, const void*, const void*, const void*,
                         const void*, void*, void*, void*, DType, Device dev) {
  unavailable("group_norm_backward", dev);
}
void avg_pool2d_forward(const kernels::cpu::Pool2dShape&, const void*, void*, DType, Device dev) {
  unavailable("avg_pool2d", dev);
}
void avg_pool2d_backward(const kernels::cpu::Pool2dShape&, const void*, void*, DType, Device dev) {
  unavailable("avg_pool2d_backward", dev);
}
void dropout_forward(int64_t, double, uint64_t, uint64_t, const void*, void*, DType, Device dev) {
  unavailable("dropout", dev);
}
void dropout_backward(int64_t, double, uint64_t, uint64_t, const void*, void*, DType, Device dev) {
  unavailable("dropout_backward", dev);
}
void adam_step(const std::vector<AdamParam>&, double, double, double, double, double, bool, DType, Device dev) {
  unavailable("adam_step", dev);
}

}  // namespace peft::cuda_ops
#endif
