// Tensor glue of the CUDA norm kernels (core/cuda/norm/norm.h), called by core/ops/norm_ops.cpp for
// CUDA tensors. Defined only with -DKIMI_LAB_CUDA=ON.
#pragma once

#include "core/tensor/tensor.h"

namespace kimi {

// y = x * rsqrt(sum(x^2) / div + eps) * w over the last dim (w undefined = ones). xc and wc
// contiguous and detached; also returns the per-row inverse norms (F32, F64 for F64 x).
struct CudaNorm {
  Tensor y, rstd;
};
CudaNorm cuda_norm(const Tensor& xc, const Tensor& wc, double div, double eps);
// dx (need_x) and dw (need_w; needs wc) from the forward's xc, wc, rstd and dy.
void cuda_norm_backward(const Tensor& xc, const Tensor& wc, const Tensor& rstd, const Tensor& dy,
                        double div, bool need_x, bool need_w, Tensor* dx, Tensor* dw);

}  // namespace kimi
