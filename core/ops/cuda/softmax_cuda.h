// Tensor glue of the CUDA softmax-family kernels (core/cuda/softmax.h), called by
// core/ops/softmax_ops.cpp for CUDA tensors. Defined only with -DKIMI_LAB_CUDA=ON.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace kimi {

// softmax / log_softmax of x along the last dim.
Tensor cuda_softmax(const Tensor& x, bool log);
// dx from y = the forward's output and dy.
Tensor cuda_softmax_backward(const Tensor& y, const Tensor& dy, bool log);

// What the cross-entropy backward needs, all on the device: no host sync in either pass.
struct CudaCrossEntropy {
  Tensor loss;       // scalar, logits' dtype
  Tensor logits;     // contiguous [N, C], detached
  Tensor targets;    // [N], I32 or I64, contiguous
  Tensor lse;        // [N], F32 (F64 for F64 logits)
  Tensor inv_count;  // scalar, lse's dtype: 1 / #counted rows, or 0
  int64_t ignore_index = -100;
};
CudaCrossEntropy cuda_cross_entropy(const Tensor& logits, const Tensor& targets,
                                    int64_t ignore_index);
Tensor cuda_cross_entropy_backward(const CudaCrossEntropy& ce, const Tensor& g);

}  // namespace kimi
