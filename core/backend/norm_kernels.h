// Kernel table of the norms over the last dim, shared by rms_norm (div = n) and l2_norm
// (div = 1, no weight): r = 1 / sqrt(sum(x^2) / div + eps), y = x * r * w. Inputs are checked
// by the op (core/ops/norm_ops.cpp), detached, contiguous and on the table's device; `name` is
// the op's name, for the kernels' own dtype errors.
#pragma once

#include "core/backend/backend.h"

namespace kimi {

struct NormKernels {
  // y [..., n] from x [..., n] and w [n] (undefined: ones). *rstd: the per-row r, kept for the
  // backward in the backend's accumulation dtype.
  Tensor (*norm)(const Tensor& x, const Tensor& w, double div, double eps, Tensor* rstd,
                 const char* name) = nullptr;
  // dx (when need_x) and dw (when need_w; w defined) from the forward's x, w, rstd and dy.
  void (*norm_backward)(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                        double div, bool need_x, bool need_w, Tensor* dx, Tensor* dw,
                        const char* name) = nullptr;
};

}  // namespace kimi
