// Kernel table of the reduction family: sum over dims, max along one dim (+ backward), cumsum,
// argmax over the last dim. Inputs are checked by the ops (core/ops/reduce_ops.cpp) and live on
// the table's device; dims come normalised.
#pragma once

#include <vector>

#include "core/backend/backend.h"

namespace kimi {

// A shape viewed as [outer, n, inner] around dim d: how the kernels walk one dim of a
// contiguous tensor.
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
inline AxisSplit split_at(const Shape& s, int64_t d) {
  AxisSplit a;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    if (i < d)
      a.outer *= s[i];
    else if (i == d)
      a.n = s[i];
    else
      a.inner *= s[i];
  }
  return a;
}

struct ReduceKernels {
  // Sum of x over `dims` (sorted, unique), shaped `kshape` (x's shape, reduced dims as 1).
  Tensor (*sum)(const Tensor& x, const std::vector<int64_t>& dims, const Shape& kshape) = nullptr;
  // Max of x along dim (size > 0), shaped as x with dim kept as 1. *index: the first argmax of
  // each value (I64, one per value), what max_backward reads.
  Tensor (*max)(const Tensor& x, int64_t dim, Tensor* index) = nullptr;
  // dx of shape `in`: g (shaped as max's output) at each argmax along dim, 0 elsewhere.
  Tensor (*max_backward)(const Tensor& g, const Tensor& index, const Shape& in,
                         int64_t dim) = nullptr;
  // Inclusive prefix sum along dim; reverse sums from the end (the backward of cumsum).
  Tensor (*cumsum)(const Tensor& x, int64_t dim, bool reverse) = nullptr;
  // Index (I32) of the largest entry along the last dim (x has at least 1 dim).
  Tensor (*argmax_lastdim)(const Tensor& x) = nullptr;
};

}  // namespace kimi
