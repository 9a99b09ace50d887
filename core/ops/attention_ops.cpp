// Causal softmax attention (GQA, KV-cache offset) and RoPE: shape checks at the boundary, the
// backend's supports() before any kernel, its attention table inside, one tape node each.
#include <cmath>
#include <memory>

#include "core/autograd/autograd.h"
#include "core/backend/attention_kernels.h"
#include "core/ops/mixer_ops.h"

namespace kimi {

// o_i = sum_{j <= i + Tk - Tq} softmax_j(scale q_i . k_j) v_j per query head (kv head h/(Hq/Hkv)).
// Backward (FlashAttention-2): P recomputed from the saved lse, D_i = do_i . o_i,
// dv_j = sum_i P_ij do_i, dS_ij = P_ij (do_i . v_j - D_i), dq_i = scale sum_j dS_ij k_j,
// dk_j = scale sum_i dS_ij q_i (dk, dv summed over the query heads of each kv head).
Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  KIMI_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "causal_attention: q {} k {} v {}",
             shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  const int64_t B = q.size(0), Tq = q.size(1), Hq = q.size(2), D = q.size(3);
  const int64_t Tk = k.size(1), Hkv = k.size(2), Dv = v.size(3);
  KIMI_CHECK(
      k.size(0) == B && v.size(0) == B && v.size(1) == Tk && v.size(2) == Hkv && k.size(3) == D,
      "causal_attention: q {} k {} v {}", shape_str(q.shape()), shape_str(k.shape()),
      shape_str(v.shape()));
  KIMI_CHECK(Hkv > 0 && Hq % Hkv == 0, "causal_attention: {} query heads over {} kv heads", Hq,
             Hkv);
  KIMI_CHECK(Tq <= Tk, "causal_attention: {} queries for {} keys", Tq, Tk);
  check_same_device(q, k, "causal_attention");
  check_same_device(q, v, "causal_attention");
  KIMI_CHECK(is_floating(q.dtype()) && k.dtype() == q.dtype() && v.dtype() == q.dtype(),
             "causal_attention: q {}, k {}, v {} must share one float dtype", dtype_name(q.dtype()),
             dtype_name(k.dtype()), dtype_name(v.dtype()));
  const OpContext ctx = OpContext::current();
  check_supported(
      q.device(),
      {Op::k_causal_attention, q.dtype(), {q.shape(), k.shape(), v.shape()}, 0, false, ctx});
  const AttentionDims d{B,   Tq, Tk, Hq,
                        Hkv, D,  Dv, scale < 0 ? 1.0 / std::sqrt(static_cast<double>(D)) : scale};
  const auto& kt = kernels<AttentionKernels>(q, "causal_attention");
  auto saved = std::make_shared<AttentionSaved>();
  Tensor o = kt.attention(d, q, k, v, ctx, saved.get());
  return record("causal_attention", o, {q, k, v},
                [&kt, d, saved, ctx](const std::vector<Tensor>& go) -> std::vector<Tensor> {
                  return kt.attention_backward(d, *saved, go[0], ctx);
                });
}

// y_i = x_i cos(a_i) - x_{i+D/2} sin(a_i), y_{i+D/2} = x_{i+D/2} cos(a_i) + x_i sin(a_i),
// a_i = (pos0 + t) theta^(-2i/D). The rotation is orthogonal, so the backward applies its
// transpose (the inverse rotation) to dy.
Tensor rope(const Tensor& x, int64_t pos0, double theta) {
  KIMI_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope: x {} (want [B,T,H,D], D even)",
             shape_str(x.shape()));
  KIMI_CHECK(theta > 0, "rope: theta must be positive, got {}", theta);
  KIMI_CHECK(is_floating(x.dtype()), "rope: float input, got {}", dtype_name(x.dtype()));
  check_supported(x.device(), {Op::k_rope, x.dtype(), {x.shape()}, 0, false, OpContext::current()});
  const auto& k = kernels<AttentionKernels>(x, "rope");
  Tensor y = k.rope(x, pos0, theta);
  const DType dt = x.dtype();
  return record("rope", y, {x},
                [&k, pos0, theta, dt](const std::vector<Tensor>& go) -> std::vector<Tensor> {
                  return {k.rope_backward(go[0].to(dt), pos0, theta)};
                });
}

}  // namespace kimi
