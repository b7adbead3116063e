// Where a tensor lives: the CPU or a CUDA device (DESIGN.md decision 6). Memory statistics
// and the CUDA cache are in core/cuda_api.h.
#pragma once
#include <string>

namespace peft {

struct Device {
  enum class Type { CPU, CUDA };
  Type type = Type::CPU;
  int index = 0;

  static Device cpu() { return {Type::CPU, 0}; }
  static Device cuda(int index = 0) { return {Type::CUDA, index}; }
  // "cpu", "cuda", "cuda:1"; anything else is a peft::Error.
  static Device parse(const std::string& s);
  bool is_cpu() const { return type == Type::CPU; }
  bool is_cuda() const { return type == Type::CUDA; }
  std::string str() const;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

// Usable CUDA devices: 0 in a build without PEFT_CUDA, or on a machine without a GPU/driver.
int cuda_device_count();
inline bool cuda_is_available() { return cuda_device_count() > 0; }
// Whether this build contains the CUDA backend at all.
bool built_with_cuda();

}  // namespace peft
