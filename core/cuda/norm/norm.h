// Norm CUDA kernels over the last dim of contiguous [rows, n] buffers, shared by rms_norm
// (div = n) and l2_norm (div = 1, no weight): r = 1 / sqrt(sum(x^2) / div + eps),
// y = x * r * w. Float storage F32, F64 or BF16; r is saved per row in the compute type ("acc":
// F64 for F64, else F32).
#pragma once

#include <cstdint>

#include "core/cuda/runtime/copy.h"

namespace kimi::cuda {

// w may be nullptr (ones). Writes y [rows, n] and rstd [rows] (acc type).
void norm_forward(ElemType t, int64_t rows, int64_t n, double div, double eps, const void* x,
                  const void* w, void* y, void* rstd);
// dx = r * (gw - x r * sum_j(gw_j x_j r) / div), gw = dy * w.
void norm_backward_x(ElemType t, int64_t rows, int64_t n, double div, const void* x, const void* w,
                     const void* rstd, const void* dy, void* dx);
// dw[j] = sum_r dy[r, j] * x[r, j] * rstd[r].
void norm_backward_w(ElemType t, int64_t rows, int64_t n, const void* x, const void* rstd,
                     const void* dy, void* dw);

}  // namespace kimi::cuda
