// matmul and linear on CUDA tensors through cuBLAS (core/ops/matmul_ops.cpp dispatches here
// after its shape checks). Each returns the op's output with its autograd node recorded; the
// backward runs on the GPU as well. F32 tensors multiply with the operand precision of
// kimi::compute_precision() (fp32 | tf32 | bf16, fp32 accumulation); BF16 tensors in bf16 with
// fp32 accumulation; F64 in fp64. Strided inputs are read in place where cuBLAS can (row- or
// column-major matrices, batch dims that fold into one stride), else copied contiguous.
#pragma once

#include "core/tensor/tensor.h"

namespace kimi {

// a [..., M, K] @ b [K, N] or b [..., K, N] (shapes already checked).
Tensor cuda_matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ w [out, in]^T + bias [out] (bias optional).
Tensor cuda_linear(const Tensor& x, const Tensor& w, const Tensor& bias);

}  // namespace kimi
