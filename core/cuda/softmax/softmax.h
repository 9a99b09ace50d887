// Softmax-family CUDA kernels over the last dim of contiguous [rows, n] buffers: softmax,
// log_softmax and cross-entropy, forward and backward. Float storage F32, F64 or BF16; the
// per-row statistics are kept in the compute type ("acc": F64 for F64, else F32).
#pragma once

#include <cstdint>

#include "core/cuda/runtime/copy.h"

namespace kimi::cuda {

// y = softmax(x) or log_softmax(x) along each row.
void softmax_forward(ElemType t, int64_t rows, int64_t n, const void* x, void* y, bool log);
// softmax:     dx = y * (dy - sum_j dy_j y_j)
// log_softmax: dx = dy - exp(y) * sum_j dy_j
void softmax_backward(ElemType t, int64_t rows, int64_t n, const void* y, const void* dy, void* dx,
                      bool log);

// Cross-entropy of logits x [rows, c] against targets [rows] (I32 or I64), averaged over the
// rows whose target != ignore. Writes lse[rows] (acc type; the backward's input), loss (one
// element of the acc type, F32 for BF16 logits: the mean, 0 when no row counts) and inv_count (one
// acc element: 1 / count, or 0). A target outside [0, c) that is not `ignore` makes the loss NaN
// (no host sync to raise an error).
void cross_entropy_forward(ElemType t, int64_t rows, int64_t c, const void* x, ElemType target_type,
                           const void* targets, int64_t ignore, void* lse, void* loss,
                           void* inv_count);
// dx[r, j] = g * inv_count * (exp(x[r, j] - lse[r]) - [j == t_r]), 0 on ignored rows; g is one
// element of the acc type on the device (as the loss).
void cross_entropy_backward(ElemType t, int64_t rows, int64_t c, const void* x,
                            ElemType target_type, const void* targets, int64_t ignore,
                            const void* lse, const void* inv_count, const void* g, void* dx);

}  // namespace kimi::cuda
