// Where a tensor lives: the CPU or a CUDA device (DESIGN.md decision 6), or "meta" — PyTorch's
// device of shapes without memory, for counting and checking a model's parameters without
// allocating them (MetaDeviceGuard). Memory statistics and the CUDA cache are in core/cuda_api.h.
#pragma once
#include <string>

namespace peft {

struct Device {
  enum class Type { CPU, CUDA, Meta };
  Type type = Type::CPU;
  int index = 0;

  static Device cpu() { return {Type::CPU, 0}; }
  static Device cuda(int index = 0) { return {Type::CUDA, index}; }
  static Device meta() { return {Type::Meta, 0}; }
  // "cpu", "cuda", "cuda:1", "meta"; anything else is a peft::Error.
  static Device parse(const std::string& s);
  bool is_cpu() const { return type == Type::CPU; }
  bool is_cuda() const { return type == Type::CUDA; }
  bool is_meta() const { return type == Type::Meta; }
  std::string str() const;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

// The device of tensors created without an explicit one (Tensor::empty / zeros / ones / full):
// the CPU, or meta while a MetaDeviceGuard lives on this thread.
Device default_device();

// PyTorch's `with torch.device("meta"):` for model construction: while alive, tensors this thread
// creates without naming a device are meta tensors — shape, dtype and strides, no memory, no
// initialisation (nn::init and fill_ skip them). A module built so has its parameters' names,
// shapes and counts, so a 7-billion-parameter model's LoRA can be counted in milliseconds; any op
// that would read or write a meta tensor's data throws. Guards nest.
class MetaDeviceGuard {
 public:
  MetaDeviceGuard();
  ~MetaDeviceGuard();
  MetaDeviceGuard(const MetaDeviceGuard&) = delete;
  MetaDeviceGuard& operator=(const MetaDeviceGuard&) = delete;

 private:
  bool previous_;
};

// Usable CUDA devices: 0 in a build without PEFT_CUDA, or on a machine without a GPU/driver.
int cuda_device_count();
inline bool cuda_is_available() { return cuda_device_count() > 0; }
// Whether this build contains the CUDA backend at all.
bool built_with_cuda();

}  // namespace peft
