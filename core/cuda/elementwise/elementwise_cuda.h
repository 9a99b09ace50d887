// Tensor glue of the CUDA elementwise kernels (core/cuda/elementwise/elementwise.h), called by
// core/ops/elementwise_ops.cpp and join_ops.cpp for CUDA tensors. Defined only with
// -DKIMI_LAB_CUDA=ON. Float tensors may be F32, F64 or BF16 (bf16 computes in fp32).
#pragma once

#include "core/cpu/elementwise.h"
#include "core/cuda/runtime/cuda_tensor.h"

namespace kimi {

// a op b broadcast to `shape` (a, b on CUDA, same dtype).
Tensor cuda_binary(cpu::BinaryKind kind, const Tensor& a, const Tensor& b, const Shape& shape);
// (a >= b) ? 1 : 0 broadcast to `shape`, in a's dtype: the gradient routing of maximum.
Tensor cuda_ge_mask(const Tensor& a, const Tensor& b, const Shape& shape);
Tensor cuda_unary(cpu::UnaryKind kind, const Tensor& x, double p);
// dx = dy * f'(x), y = f(x).
Tensor cuda_unary_backward(cpu::UnaryKind kind, const Tensor& x, const Tensor& y, const Tensor& dy,
                           double p);

}  // namespace kimi
