// Rotary position embedding on the GPU, the same rotate-half convention as
// core/cpu/rope.h: channel i pairs with i + D/2, angle (pos0 + t) * theta^(-2i/D).
#pragma once

#include <cstdint>

#include "core/cuda/runtime/copy.h"

namespace kimi::cuda {

// y = rope(x) for x, y [B, T, H, D] contiguous (D even; y may be x). inverse = true rotates by
// the negated angles: the transpose, hence also the backward. F32, BF16 (fp32 math) or F64.
void rope(ElemType t, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0, double theta,
          bool inverse, const void* x, void* y);

}  // namespace kimi::cuda
