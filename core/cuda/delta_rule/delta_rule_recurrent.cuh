// Shared by the recurrent delta-rule files (not a public API): the checked parameter block of a
// recurrent call, and the forward launcher (delta_rule_recurrent.cu) that the backward
// (checkpoints) and the decode step (fallback) run too.
#pragma once

#include "core/cuda/delta_rule/delta_rule_common.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda::detail {

template <class Ti>
Params<Ti> recurrent_params(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                            const Ti* g, const Ti* beta, const float* h0, Ti* o, float* ht) {
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.T >= 0 && d.H >= 0 && d.K > 0 && d.V > 0, "delta rule: bad dims");
  KIMI_CUDA_REQUIRE((d.gate == GateKind::kNone) == (g == nullptr),
                    "delta rule: g must be given exactly when the gate kind is not kNone");
  Params<Ti> p = make_params(d, q, k, v, g, beta, h0, o, ht);
  p.every = 1;
  return p;
}

// The recurrent forward (float and __nv_bfloat16); with p.ckpt it also stores the states at
// chunk boundaries. No steps (T == 0): ht = h0.
template <class Ti>
void launch_recurrent_fwd(const Params<Ti>& p, cudaStream_t stream);

}  // namespace kimi::cuda::detail
