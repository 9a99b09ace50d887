// rope on CUDA tensors (the rope op of core/ops/attention_ops.cpp dispatches here), over
// core/cuda/sequence/rope.h: output and backward on the GPU. F32, BF16 (fp32 math) or F64.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace kimi {

// x [B, T, H, D] (D even, checked by the caller), token t at position pos0 + t.
Tensor cuda_rope(const Tensor& x, int64_t pos0, double theta);

}  // namespace kimi
