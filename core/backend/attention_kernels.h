// Kernel table of causal softmax attention (GQA, KV-cache offset) and RoPE. Inputs are checked
// by the ops (core/ops/attention_ops.cpp: shapes, one device and dtype, asked supports()) and
// live on the table's device. Dims: core/kernels/attention.h.
#pragma once

#include "core/backend/backend.h"
#include "core/kernels/attention.h"

namespace kimi {

// What the attention backward reads, kept on the device that ran the forward.
struct AttentionSaved {
  Tensor q, k, v;  // the inputs, detached and contiguous
  Tensor o;        // [B,Tq,Hq,Dv], the output
  Tensor lse;      // [B,Hq,Tq] log-sum-exp of the scaled scores per query row
};

struct AttentionKernels {
  // o [B,Tq,Hq,Dv] in q's dtype, and what the backward needs.
  Tensor (*attention)(const AttentionDims& d, const Tensor& q, const Tensor& k, const Tensor& v,
                      const OpContext& ctx, AttentionSaved* saved) = nullptr;
  // {dq, dk, dv} in the inputs' dtype from the upstream gradient of o; ctx is the forward's.
  std::vector<Tensor> (*attention_backward)(const AttentionDims& d, const AttentionSaved& saved,
                                            const Tensor& d_o, const OpContext& ctx) = nullptr;
  // x [B,T,H,D] (D even) rotated, token t at position pos0 + t (rotate-half convention).
  Tensor (*rope)(const Tensor& x, int64_t pos0, double theta) = nullptr;
  // dx from dy: the inverse (transposed) rotation.
  Tensor (*rope_backward)(const Tensor& dy, int64_t pos0, double theta) = nullptr;
};

}  // namespace kimi
