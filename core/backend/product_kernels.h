// Kernel table of the matrix products: matmul (batched) and linear (PyTorch layout, w [out,
// in]). Inputs are checked by the ops (core/ops/matmul_ops.cpp) and live on the table's
// device. ctx is the OpContext the op captured at forward time and hands to both passes, so a
// precision change between them cannot change the backward's math: CUDA maps ctx.precision to
// its F32 GEMM operand precision; the CPU computes in the tensors' dtype and ignores it.
#pragma once

#include "core/backend/backend.h"

namespace kimi {

struct ProductKernels {
  // a [..., M, K] @ b [K, N] (shared by the batch) or b [..., K, N] (same leading dims as a).
  Tensor (*matmul)(const OpContext& ctx, const Tensor& a, const Tensor& b) = nullptr;
  // From dC = g: *da = g b^T (need_a), *db = a^T g (need_b; summed over the batch when b is
  // shared).
  void (*matmul_backward)(const OpContext& ctx, const Tensor& a, const Tensor& b, const Tensor& g,
                          bool need_a, bool need_b, Tensor* da, Tensor* db) = nullptr;
  // x [..., in] @ w [out, in]^T + bias [out] (bias optional).
  Tensor (*linear)(const OpContext& ctx, const Tensor& x, const Tensor& w,
                   const Tensor& bias) = nullptr;
  // From dy = g: *dx = g w (need_x), *dw = g^T x (need_w), *dbias = column sums of g
  // (need_bias).
  void (*linear_backward)(const OpContext& ctx, const Tensor& x, const Tensor& w, const Tensor& g,
                          bool need_x, bool need_w, bool need_bias, Tensor* dx, Tensor* dw,
                          Tensor* dbias) = nullptr;
};

}  // namespace kimi
