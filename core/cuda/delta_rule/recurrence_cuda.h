// The linear-recurrence ops on CUDA tensors (core/ops/mixer_ops.cpp dispatches here): Tensor
// glue over the raw kernels of core/cuda/delta_rule/delta_rule.cuh. Inputs are contiguous and checked.
// Which kernel runs follows kimi::compute_precision() for F32 tensors:
//   fp32        the recurrent kernels (exact fp32; the chunk kernels use tensor cores, which
//               have no full-fp32 mode), whatever the requested form;
//   tf32 / bf16 the chunk kernels for form chunk (operands TF32 / rounded to bf16), the
//               recurrent ones for form recurrent.
// BF16 tensors run the bf16 kernels. States (h0, ht, their gradients) are F32 on the GPU.
// This holds for the delta rule and the gated linear recurrence (Mamba2) alike; V > 128 always
// runs the recurrent kernels. K <= 128 on CUDA.
#pragma once

#include <vector>

#include "core/cpu/delta_rule.h"
#include "core/tensor/tensor.h"

namespace kimi {

struct CudaRecurrenceInputs {
  cpu::RecurrenceDims dims;
  bool delta = true;  // delta rule (beta defined) or gated linear recurrence
  bool chunk = true;  // the requested form
  Tensor q, k, v, g, beta, h0;
};

// {o [B,T,H,V] in q's dtype, ht [B,H,K,V] F32}
std::vector<Tensor> cuda_recurrence_fwd(const CudaRecurrenceInputs& in);
// {dq, dk, dv, dg, dbeta, dh0} in the inputs' dtypes (undefined where the input is).
std::vector<Tensor> cuda_recurrence_bwd(const CudaRecurrenceInputs& in, const Tensor& d_o,
                                        const Tensor& dht);

}  // namespace kimi
