// N-d strided iteration for CPU kernels: walks a shape with up to three stride sets (in
// elements), calling the body once per innermost row so the hot loop is a plain 1-d loop.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace kimi::cpu {

// body(offs, n, inner_strides): offs[i] is the element offset of operand i at the row start,
// n the row length, inner_strides[i] its stride along the row.
template <size_t N, class F>
void for_each_row(const std::vector<int64_t>& shape,
                  const std::array<const std::vector<int64_t>*, N>& strides, F&& body) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  std::array<int64_t, N> offs{};
  std::array<int64_t, N> inner{};
  if (nd == 0) {
    body(offs, int64_t{1}, inner);
    return;
  }
  for (int64_t d = 0; d < nd; ++d)
    if (shape[d] == 0) return;
  const int64_t n = shape[nd - 1];
  for (size_t i = 0; i < N; ++i) inner[i] = (*strides[i])[nd - 1];
  std::vector<int64_t> idx(nd, 0);
  while (true) {
    body(offs, n, inner);
    int64_t d = nd - 2;
    for (; d >= 0; --d) {
      ++idx[d];
      for (size_t i = 0; i < N; ++i) offs[i] += (*strides[i])[d];
      if (idx[d] < shape[d]) break;
      for (size_t i = 0; i < N; ++i) offs[i] -= (*strides[i])[d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

}  // namespace kimi::cpu
