// Tensor glue of the CUDA reductions and scans (core/cuda/reduce/reduce.h), called by
// core/ops/reduce_ops.cpp for CUDA tensors. Defined only with -DKIMI_LAB_CUDA=ON.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace kimi {

// Sum of x over `dims` (normalised, sorted, unique), shaped `kshape` (the reduced dims kept as 1).
Tensor cuda_sum(const Tensor& x, const std::vector<int64_t>& dims, const Shape& kshape);

// Max of x along dim (normalised): values shaped as x with dim kept as 1, and the first argmax
// of each (I64, one per value) for the backward.
struct CudaMax {
  Tensor values, index;
};
CudaMax cuda_max(const Tensor& x, int64_t dim);
// dx of shape `in`: g (the keepdim-shaped gradient) at each argmax along dim, 0 elsewhere.
Tensor cuda_max_backward(const Tensor& g, const Tensor& index, const Shape& in, int64_t dim);

Tensor cuda_cumsum(const Tensor& x, int64_t dim, bool reverse);
Tensor cuda_argmax_lastdim(const Tensor& x);

}  // namespace kimi
