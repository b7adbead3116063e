// The process-wide TF32, cuDNN and fused-LoRA switches, in every build. (The CPU-only build's refusing
// versions of the core/cuda_ops.h kernels are in core/cuda_api.cpp, beside those of
// core/cuda_api.h.)
#include <atomic>

#include "core/cuda_api.h"

namespace peft::cuda {

namespace {
std::atomic<bool> g_allow_tf32{false};
std::atomic<bool> g_cudnn_enabled{true};
std::atomic<LoraCudaPath> g_lora_path{LoraCudaPath::Auto};
}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }
void set_cudnn_enabled(bool enabled) { g_cudnn_enabled.store(enabled); }
bool cudnn_enabled() { return g_cudnn_enabled.load(); }
void set_lora_path(LoraCudaPath path) { g_lora_path.store(path); }
LoraCudaPath lora_path() { return g_lora_path.load(); }
const char* lora_path_name(LoraCudaPath path) {
  switch (path) {
    case LoraCudaPath::Auto: return "auto";
    case LoraCudaPath::Chain: return "chain";
    case LoraCudaPath::Wmma: return "wmma";
  }
  return "?";
}
void set_lora_fused(bool enabled) { set_lora_path(enabled ? LoraCudaPath::Auto : LoraCudaPath::Chain); }
bool lora_fused() { return lora_path() != LoraCudaPath::Chain; }

}  // namespace peft::cuda
