// The error measure of the GPU parity tests: max|got - ref| / max(max|ref|, 1e-6), +inf for a
// non-finite value or a size mismatch.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/tensor/tensor.h"

namespace kimi::testing {

inline double rel_max(const std::vector<double>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double diff = 0, scale = 1e-6;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff = std::max(diff, std::abs(got[i] - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return diff / scale;
}

inline double rel_max(const Tensor& got, const Tensor& ref) {
  return rel_max(got.to(Device::kCPU).to_vector<double>(),
                 ref.to(Device::kCPU).to_vector<double>());
}

}  // namespace kimi::testing
