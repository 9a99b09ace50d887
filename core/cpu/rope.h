// Rotary position embedding (RoFormer, Su et al. 2021) on the CPU, in Hugging Face Llama's
// rotate-half convention: channel i pairs with i + D/2, angle pos * theta^(-2i/D).
// Framework-free: raw contiguous row-major pointer, applied in place.
#pragma once

#include <cstdint>

namespace kimi::cpu {

// x [B,T,H,D] (D even) rotated in place; token t sits at position pos0 + t. inverse=true applies
// the transposed rotation (angle -> -angle), which is also the backward of the forward.
template <class T>
void rope_apply(T* x, int64_t B, int64_t T_, int64_t H, int64_t D, int64_t pos0, double theta,
                bool inverse);

}  // namespace kimi::cpu
