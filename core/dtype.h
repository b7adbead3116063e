// Element types. F32 everywhere, F64 on the CPU (gradient checks), I64 indices, BF16/F16 as
// storage with conversion (DESIGN.md decision 7).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace peft {

enum class DType : uint8_t { F32, F64, I64, BF16, F16 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);         // "F32", ... (the safetensors spelling)
DType dtype_from_name(const std::string& s);  // throws peft::Error on an unknown name
inline bool is_floating(DType t) { return t != DType::I64; }
// torch.promote_types for two floating dtypes: the wider one; BF16 with F16 gives F32.
inline DType promote_float_types(DType a, DType b) {
  if (a == b) return a;
  if (a == DType::F64 || b == DType::F64) return DType::F64;
  return DType::F32;
}

// Scalar <-> 16-bit float conversions (round-to-nearest-even on the way down).
float bf16_to_float(uint16_t v);
uint16_t float_to_bf16(float f);
float f16_to_float(uint16_t v);
uint16_t float_to_f16(float f);

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };

}  // namespace peft
