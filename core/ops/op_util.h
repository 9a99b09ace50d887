// Small helpers shared by the op implementations.
#pragma once

#include "core/tensor/tensor.h"

namespace kimi {

Shape broadcast_shapes(const Shape& a, const Shape& b);

inline int64_t wrap_dim(int64_t d, int64_t n, const char* op) {
  if (d < 0) d += n;
  KIMI_CHECK(d >= 0 && d < n, "{}: dim {} out of range for a {}-d tensor", op, d, n);
  return d;
}

}  // namespace kimi
