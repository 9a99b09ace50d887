// Kernel table of the linear recurrences: the gated delta rule (DeltaNet / GDN / KDA) and the
// gated linear recurrence (Mamba2's SSD core). Inputs are checked by the op
// (core/ops/mixer_ops.cpp: shapes, one device, asked supports()) and live on the table's device.
// Math: docs/math.md; dims and layout: core/kernels/recurrence.h.
#pragma once

#include "core/backend/backend.h"
#include "core/kernels/recurrence.h"

namespace kimi {

// One call's inputs, detached and contiguous, as the op received them (their dtypes may differ
// where the backend converts: autocast's BF16 q, k, v with F32 gates and state on the GPU).
// g undefined for GateKind::kNone, beta for the linear recurrence, h0 for a zero state.
struct RecurrenceArgs {
  RecurrenceDims dims{};  // dims.chunk: the chunk size of the chunk form
  bool delta = true;      // the delta rule (beta defined) or the gated linear recurrence
  bool chunk = true;      // the requested form: chunkwise or token by token
  Tensor q, k, v, g, beta, h0;
};

struct RecurrenceOutputs {
  Tensor o;   // [B,T,H,V], q's dtype
  Tensor ht;  // [B,H,K,V], the final state
};

// Gradients of q, k, v, g, beta, h0 in the inputs' dtypes; undefined where the input is.
struct RecurrenceGrads {
  Tensor dq, dk, dv, dg, dbeta, dh0;
};

struct RecurrenceKernels {
  RecurrenceOutputs (*forward)(const RecurrenceArgs& a, const OpContext& ctx) = nullptr;
  // From the upstream gradients of o and ht, recomputing the states from the saved inputs; ctx
  // is the forward's.
  RecurrenceGrads (*backward)(const RecurrenceArgs& a, const Tensor& d_o, const Tensor& dht,
                              const OpContext& ctx) = nullptr;
};

}  // namespace kimi
