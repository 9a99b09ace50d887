// Kernel table of the softmax family (softmax, log_softmax, cross-entropy) over the last dim.
// Inputs are checked by the op (core/ops/softmax_ops.cpp) and live on the table's device.
#pragma once

#include "core/backend/backend.h"

namespace kimi {

// What the cross-entropy backward reads, kept on the device that ran the forward (no host sync
// in either pass on the GPU).
struct CrossEntropySaved {
  Tensor logits;     // contiguous [N, C], detached
  Tensor targets;    // [N], I32 or I64, contiguous
  Tensor lse;        // [N] log-sum-exp per row, F32 (F64 for F64 logits)
  Tensor inv_count;  // scalar, lse's dtype: 1 / #counted rows, or 0
  int64_t ignore_index = -100;
};

struct SoftmaxKernels {
  // y = softmax(x) or log_softmax(x) along the last dim.
  Tensor (*softmax)(const Tensor& x, bool log) = nullptr;
  // dx from the forward's output y and dy.
  Tensor (*softmax_backward)(const Tensor& y, const Tensor& dy, bool log) = nullptr;
  // The scalar mean loss (F32 for BF16 logits) and what the backward needs.
  Tensor (*cross_entropy)(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                          CrossEntropySaved* saved) = nullptr;
  // dlogits from the scalar upstream gradient g.
  Tensor (*cross_entropy_backward)(const CrossEntropySaved& saved, const Tensor& g) = nullptr;
};

}  // namespace kimi
