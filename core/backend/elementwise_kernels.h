// Kernel table of the elementwise family: broadcasting binary ops, unary functions with their
// derivatives, and the select behind where / masked_fill. Inputs are checked by the ops
// (core/ops/elementwise_ops.cpp, join_ops.cpp) and live on the table's device. `name` is the
// op's name, for the kernels' own dtype errors.
#pragma once

#include "core/backend/backend.h"
#include "core/kernels/elementwise.h"

namespace kimi {

struct ElementwiseKernels {
  // a op b over `shape`, the broadcast of a's and b's shapes (a and b of one dtype).
  Tensor (*binary)(BinaryKind kind, const Tensor& a, const Tensor& b, const Shape& shape,
                   const char* name) = nullptr;
  // (a >= b) ? 1 : 0 over `shape`, in a's dtype: where maximum sends its gradient.
  Tensor (*ge_mask)(const Tensor& a, const Tensor& b, const Shape& shape) = nullptr;
  // y = f(x); p is the scalar of the *Scalar kinds.
  Tensor (*unary)(UnaryKind kind, const Tensor& x, double p, const char* name) = nullptr;
  // dx = dy * f'(x), from x and the forward's y = f(x).
  Tensor (*unary_backward)(UnaryKind kind, const Tensor& x, const Tensor& y, const Tensor& dy,
                           double p, const char* name) = nullptr;
  // out = cond != 0 ? a : b over `shape` (cond of any dtype; cond, a and b broadcast to it), in
  // the float `dtype`; an undefined a or b stands for the scalar `fill`.
  Tensor (*select)(const Tensor& cond, const Tensor& a, const Tensor& b, double fill,
                   const Shape& shape, DType dtype, const char* name) = nullptr;
};

}  // namespace kimi
