// IEEE 754 binary16 (float16) <-> float32, header-only so that the safetensors reader (which is
// also built alone under ASan) can convert F16 without linking kimi_core. Round to nearest even;
// subnormals, infinities and NaN (kept quiet) handled. kimi::f16_to_float / float_to_f16
// (declared in core/tensor/dtype.h) forward here from core/io/half.cpp.
#pragma once

#include <cstdint>
#include <cstring>

namespace kimi::io {

inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {  // inf / NaN
    bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0u);
  } else if (exp != 0) {  // normal: rebias 15 -> 127
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {  // +-0
    bits = sign;
  } else {  // subnormal: value = mant * 2^-24; normalise
    int e = -1;
    do {
      mant <<= 1;
      ++e;
    } while ((mant & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t float_to_half_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs >= 0x38800000u) {                                              // normal half (>= 2^-14)
    uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);  // round to nearest even at bit 13
    return static_cast<uint16_t>(sign | ((r - 0x38000000u) >> 13));
  }
  if (abs < 0x33000000u) return sign;  // below half of the smallest subnormal (2^-25): zero
  // Subnormal half: shift the 24-bit significand right, rounding to nearest even.
  const uint32_t e = abs >> 23;  // 102..112
  const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14..24
  const uint32_t half_ulp = 1u << (shift - 1);
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  if (rem > half_ulp || (rem == half_ulp && (q & 1u))) ++q;
  return static_cast<uint16_t>(sign | q);
}

}  // namespace kimi::io
