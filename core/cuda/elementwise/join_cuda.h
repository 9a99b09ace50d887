// Tensor glue of the CUDA selects (cuda::select in core/cuda/elementwise/elementwise.h), called by
// core/ops/join_ops.cpp for where / masked_fill and their gradients. concat, stack and split
// need no kernel of their own: they are views and strided copies, which run on any device.
// Defined only with -DKIMI_LAB_CUDA=ON.
#pragma once

#include "core/tensor/tensor.h"

namespace kimi {

// out[i] = cond[i] != 0 ? a[i] : b[i] over `shape` (cond, a and b broadcast to it; cond of any
// dtype), with an undefined a or b standing for the scalar `fill`. dtype: the float type of out.
Tensor cuda_select(const Tensor& cond, const Tensor& a, const Tensor& b, double fill,
                   const Shape& shape, DType dtype);

}  // namespace kimi
