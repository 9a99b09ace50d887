// causal_conv1d and embedding on CUDA tensors (core/ops/sequence_ops.cpp dispatches here after
// its argument checks), over the raw kernels of core/cuda/sequence/sequence.h. Each returns the output
// with its autograd node recorded; the backward runs on the GPU. F32, BF16 (fp32 math) or F64.
#pragma once

#include "core/tensor/tensor.h"

namespace kimi {

Tensor cuda_causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias,
                          const Tensor& prefix);
// ids may live on the CPU or the GPU (I32 or I64); out-of-range ids throw, as on the CPU.
Tensor cuda_embedding(const Tensor& weight, const Tensor& ids);

}  // namespace kimi
