// Element types and devices. bfloat16/float16 are storage types: ops compute in f32/f64.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/tensor/error.h"

namespace kimi {

enum class DType : uint8_t { kF32, kF64, kBF16, kF16, kI32, kI64 };
enum class Device : uint8_t { kCPU, kCUDA };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF64: return 8;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

// Names as in the safetensors header.
inline std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF64: return "F64";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
  }
  return "?";
}

inline bool dtype_from_name(std::string_view s, DType* out) {
  for (DType t : {DType::kF32, DType::kF64, DType::kBF16, DType::kF16, DType::kI32, DType::kI64}) {
    if (dtype_name(t) == s) {
      *out = t;
      return true;
    }
  }
  return false;
}

inline bool is_floating(DType t) {
  return t == DType::kF32 || t == DType::kF64 || t == DType::kBF16 || t == DType::kF16;
}

inline std::string_view device_name(Device d) { return d == Device::kCPU ? "cpu" : "cuda"; }

// bfloat16 <-> float: round to nearest even, NaN kept quiet.
inline float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
float f16_to_float(uint16_t h);
uint16_t float_to_f16(float f);

}  // namespace kimi
