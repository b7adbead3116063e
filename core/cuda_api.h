// The CUDA backend as core/ sees it: plain declarations, no CUDA headers, so every core file
// compiles the same with or without the toolkit. kernels/cuda/memory.cu defines these in a
// CUDA build; core/cuda_api.cpp defines versions that throw "CUDA is not available in this
// build" otherwise. Every function taking a CUDA Device checks it exists first
// ("cuda:0 is not available: this machine has 0 CUDA devices").
#pragma once
#include <cstddef>

#include "core/allocator.h"
#include "core/device.h"

namespace peft::cuda {

// ---- public: memory statistics and the cache (torch.cuda.memory_stats / empty_cache)
// Returns the cached free blocks of the device's caching allocator to the driver.
void empty_cache(Device device = Device::cuda(0));
AllocatorStats memory_stats(Device device = Device::cuda(0));
void reset_peak_memory_stats(Device device = Device::cuda(0));
// Waits for all work queued on the device's stream.
void synchronize(Device device = Device::cuda(0));
// F32 GEMMs (matmul, linear, lora_linear) and cuDNN convolutions (conv2d) on CUDA may use TF32
// tensor cores: ~10 mantissa bits per product instead of 23, so results differ from the CPU's
// by ~1e-3 relative. Off by default (exact F32, as torch.backends.cuda.matmul.allow_tf32 =
// False; note PyTorch's separate cuDNN switch defaults to on, ours is the same one switch);
// process-wide; a plain flag, so it can be set in any build.
void set_allow_tf32(bool allow);
bool allow_tf32();
// conv2d on CUDA runs through cuDNN when the build has it (CMake PEFT_CUDNN) and this switch
// is on (the default, as torch.backends.cudnn.enabled); otherwise, and for any convolution
// cuDNN refuses, through the hand-written direct kernels (kernels/cuda/conv.cuh), which are
// slower but need no workspace. Process-wide plain flag, settable in any build.
void set_cudnn_enabled(bool enabled);
bool cudnn_enabled();
// How lora_linear runs on CUDA (LoraLinear and LoRA 1×1 convs go through it). Process-wide.
//   Auto (the default): the measured rule of core/ops_lora_fast.cpp. With no dropout in effect and
//     N·(in + out) > in·out (N the rows of x), the merged path: W' = W + s·B·A in one cuBLASLt
//     GEMM, then y = x·W'ᵀ + b with the bias in the epilogue, and dX = dY·W' in backward (two
//     skinny GEMMs give dA, dB). Otherwise the epilogue chain: y = x·Wᵀ + b (bias in the
//     epilogue), u = s·dropout(x)·Aᵀ, y += u·Bᵀ. Also takes F32 adapters on a BF16 / F16 base
//     (autocast_adapter_dtype): products on BF16 copies of A, B, F32 adapter gradients.
//   Chain: PEFT's order with plain cuBLAS GEMMs (the reference path; mixed dtypes as composed ops).
//   Wmma: the hand-written tensor-core kernels of kernels/cuda/lora_fused.cu (BF16, or F32 with
//     TF32 on; Chain otherwise). Measured 5-10x slower than Chain on an H200 (2026-12-04): kept for
//     their tests and for people benchmarking LoRA kernels.
enum class LoraCudaPath { Auto, Chain, Wmma };
void set_lora_path(LoraCudaPath path);
LoraCudaPath lora_path();
const char* lora_path_name(LoraCudaPath path);
// Shorthand: on = Auto, off = Chain. lora_fused() is true unless the path is Chain.
void set_lora_fused(bool enabled);
bool lora_fused();
// The version of the cuDNN library loaded (e.g. 91900 for 9.19.0), or 0 when the build has no
// cuDNN. Needs no GPU.
int cudnn_version();

// ---- engine internals (Storage, Tensor copies)
// A block of at least nbytes from the device's caching allocator (0 bytes: a valid block).
void* device_alloc(Device device, size_t nbytes);
void device_free(Device device, void* ptr);
// Copies n bytes between any two devices (CPU included), ordered on the devices' streams.
// Returns once the bytes can be read by the host when dst is the CPU; a host source may be
// reused at once (it is pageable memory, which the driver stages before returning).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);
// Zeroes nbytes at ptr on a CUDA device (all-zero bits are 0 in every dtype).
void device_memset_zero(void* ptr, Device device, size_t nbytes);
// CUDA events for the profiler (core/profiler.h): an opaque handle of a timing event recorded now
// on the device's stream; the milliseconds between two (waits for `end`); destroy (never throws).
void* event_record(Device device);
float event_elapsed_ms(void* start, void* end);
void event_destroy(void* event) noexcept;

}  // namespace peft::cuda
