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

// Views a tensor as [outer, n, inner] around dim d (for reductions and scans along d).
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
inline AxisSplit split_at(const Shape& s, int64_t d) {
  AxisSplit a;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    if (i < d) a.outer *= s[i];
    else if (i == d) a.n = s[i];
    else a.inner *= s[i];
  }
  return a;
}

}  // namespace kimi
