// rope on CUDA tensors over core/cuda/sequence/rope.h, for the attention family's CUDA table
// (core/cuda/attention/attention_cuda.cpp). F32, BF16 (fp32 math) or F64.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace kimi {

// x [B, T, H, D] (D even, checked by the op), token t at position pos0 + t; inverse = true
// rotates by the negated angles (the transpose: rope's backward). Same dtype as x.
Tensor cuda_rope(const Tensor& x, int64_t pos0, double theta, bool inverse);

}  // namespace kimi
