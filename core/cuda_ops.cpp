// The process-wide TF32 switch, in every build. (The CPU-only build's refusing versions of the
// core/cuda_ops.h kernels are in core/cuda_api.cpp, beside those of core/cuda_api.h.)
#include <atomic>

#include "core/cuda_api.h"

namespace peft::cuda {

namespace {
std::atomic<bool> g_allow_tf32{false};
}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }

}  // namespace peft::cuda
