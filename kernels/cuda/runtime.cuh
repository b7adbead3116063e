// CUDA runtime probing for the rest of the engine. Built only with PEFT_CUDA; callers go
// through core/device.h's cuda_device_count(), which answers 0 in a CPU-only build.
#pragma once

namespace peft::cuda {

// Number of usable CUDA devices; 0 when there is no GPU or no driver (never throws).
int device_count() noexcept;
// The name of device `index` ("NVIDIA H100 80GB HBM3"), or "" when unavailable.
const char* device_name(int index) noexcept;

}  // namespace peft::cuda
