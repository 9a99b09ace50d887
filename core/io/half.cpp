// Out-of-line definitions of kimi::f16_to_float / float_to_f16 (declared in core/tensor/dtype.h);
// the bit manipulation lives in core/io/half.h.
#include "core/io/half.h"

#include "core/tensor/dtype.h"

namespace kimi {

float f16_to_float(uint16_t h) { return io::half_bits_to_float(h); }
uint16_t float_to_f16(float f) { return io::float_to_half_bits(f); }

}  // namespace kimi
