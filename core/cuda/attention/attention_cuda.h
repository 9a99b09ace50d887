// Tensor glue of the CUDA causal attention (core/cuda/attention/attention.h), called by causal_attention
// in core/ops/attention_ops.cpp for CUDA tensors (shapes already checked there). Defined only
// with -DKIMI_LAB_CUDA=ON. q, k, v: F32 or BF16, one dtype; the products run with the operand
// precision `prec` (the forward's kimi::compute_precision(), kept for the backward), BF16
// tensors always with bf16 operands unless prec is fp32.
#pragma once

#include <vector>

#include "core/cpu/attention.h"
#include "core/backend/precision.h"
#include "core/tensor/tensor.h"

namespace kimi {

struct CudaAttention {
  Tensor q, k, v;  // the contiguous detached inputs, kept for the backward
  Tensor o;        // [B,Tq,Hq,Dv] in q's dtype
  Tensor lse;      // [B,Hq,Tq] F32
};
CudaAttention cuda_attention_fwd(const cpu::AttentionDims& d, const Tensor& q, const Tensor& k,
                                 const Tensor& v, ComputePrecision prec);
// {dq, dk, dv} in the inputs' dtype.
std::vector<Tensor> cuda_attention_bwd(const cpu::AttentionDims& d, const CudaAttention& fwd,
                                       const Tensor& d_o, ComputePrecision prec);

}  // namespace kimi
