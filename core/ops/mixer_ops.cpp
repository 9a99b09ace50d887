// The linear-recurrence ops (delta rule, gated linear recurrence): shape checks at the boundary,
// the backend's supports() before any kernel, its recurrence table inside, one tape node each.
// Attention and RoPE: attention_ops.cpp.
#include "core/ops/mixer_ops.h"

#include <cmath>

#include "core/autograd/autograd.h"
#include "core/backend/recurrence_kernels.h"

namespace kimi {

RecurrenceForm recurrence_form_from_name(const std::string& name) {
  if (name == "chunk") return RecurrenceForm::kChunk;
  if (name == "recurrent") return RecurrenceForm::kRecurrent;
  throw UserError(fmt::format("unknown recurrence form '{}' (chunk, recurrent)", name));
}

namespace {

Shape shape_or_empty(const Tensor& t) { return t.defined() ? t.shape() : Shape{}; }
Tensor detached(const Tensor& t) { return t.defined() ? t.detach().contiguous() : Tensor(); }

// Checks one recurrence call (shapes, one device, float dtypes, what the device's backend
// supports) and returns its detached contiguous inputs. Dtypes may differ between inputs:
// whether a backend takes that (autocast on the GPU) or not (the CPU) is its own check.
RecurrenceArgs prepare(Op op_id, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                       const Tensor& beta, const Tensor& h0, const RecurrenceOptions& opt,
                       const OpContext& ctx) {
  const bool delta = op_id == Op::k_delta_rule;
  const char* op = delta ? "delta_rule" : "linear_recurrence";
  KIMI_CHECK(q.dim() == 4 && k.shape() == q.shape() && v.dim() == 4,
             "{}: q {} k {} v {} (want [B,T,H,K], [B,T,H,V])", op, shape_str(q.shape()),
             shape_str(k.shape()), shape_str(v.shape()));
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), V = v.size(3);
  KIMI_CHECK(v.size(0) == B && v.size(1) == T && v.size(2) == H, "{}: v {} does not match q {}", op,
             shape_str(v.shape()), shape_str(q.shape()));
  if (opt.gate == GateKind::kPerChannel)
    KIMI_CHECK(g.defined() && g.shape() == q.shape(), "{}: per-channel g must be [B,T,H,K]={}", op,
               shape_str(q.shape()));
  if (opt.gate == GateKind::kScalar)
    KIMI_CHECK(g.defined() && g.shape() == Shape({B, T, H}), "{}: scalar g must be [B,T,H]", op);
  if (beta.defined()) KIMI_CHECK(beta.shape() == Shape({B, T, H}), "{}: beta must be [B,T,H]", op);
  if (h0.defined()) KIMI_CHECK(h0.shape() == Shape({B, H, K, V}), "{}: h0 must be [B,H,K,V]", op);
  KIMI_CHECK(opt.chunk > 0, "{}: chunk size {}", op, opt.chunk);
  const Tensor gate = opt.gate == GateKind::kNone ? Tensor() : g;
  for (const Tensor* t : {&q, &k, &v, &gate, &beta, &h0}) {
    if (!t->defined()) continue;
    check_same_device(q, *t, op);
    KIMI_CHECK(is_floating(t->dtype()), "{}: float inputs, got {}", op, dtype_name(t->dtype()));
  }
  const bool chunk = opt.form == RecurrenceForm::kChunk;
  OpQuery query{op_id, q.dtype(), {}, chunk ? opt.chunk : 0, chunk, ctx};
  for (const Tensor* t : {&q, &k, &v, &gate, &beta, &h0})
    if (delta || t != &beta) query.shapes.push_back(shape_or_empty(*t));  // the op's arguments
  check_supported(q.device(), query);

  RecurrenceArgs a;
  const double scale = opt.scale < 0 ? 1.0 / std::sqrt(static_cast<double>(K)) : opt.scale;
  a.dims = {B, T, H, K, V, opt.gate, scale, opt.chunk};
  a.delta = delta;
  a.chunk = chunk;
  a.q = detached(q), a.k = detached(k), a.v = detached(v), a.g = detached(gate);
  a.beta = detached(beta), a.h0 = detached(h0);
  return a;
}

// One tape node over the device's recurrence kernels; `inputs` as the op received them, in the
// order of their gradients (q, k, v, g, [beta,] h0). The forward's context goes to the backward,
// so a precision change between the passes cannot change the backward's math.
//   forward:  S_t = (I - beta_t k_t k_t^T) Diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T (S: K x V),
//             o_t = S_t^T (scale q_t), ht = S_T, S_0 = h0 (delta rule; the linear recurrence
//             has no beta: S_t = Diag(exp(g_t)) S_{t-1} + k_t v_t^T).
//   backward: the states recomputed from the saved inputs (kept at chunk boundaries), dS walked
//             from T down to 1 (docs/math.md): dq, dk, dv, dg, dbeta and dh0 from (do, dht).
RecurrenceResult run(const RecurrenceArgs& a, const OpContext& ctx, const Tensor& q,
                     std::vector<Tensor> inputs) {
  const char* name = a.delta ? "delta_rule" : "linear_recurrence";
  const auto& k = kernels<RecurrenceKernels>(q, name);
  RecurrenceOutputs out = k.forward(a, ctx);
  auto outs = record_multi(name, {out.o, out.ht}, inputs,
                           [&k, a, ctx](const std::vector<Tensor>& go) -> std::vector<Tensor> {
                             RecurrenceGrads d = k.backward(a, go[0], go[1], ctx);
                             if (a.delta) return {d.dq, d.dk, d.dv, d.dg, d.dbeta, d.dh0};
                             return {d.dq, d.dk, d.dv, d.dg, d.dh0};
                           });
  return {outs[0], outs[1]};
}

}  // namespace

RecurrenceResult delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                            const Tensor& beta, const Tensor& h0, const RecurrenceOptions& opt) {
  KIMI_CHECK(beta.defined(), "delta_rule: beta is required");
  const OpContext ctx = OpContext::current();
  RecurrenceArgs a = prepare(Op::k_delta_rule, q, k, v, g, beta, h0, opt, ctx);
  return run(a, ctx, q, {q, k, v, g, beta, h0});
}

RecurrenceResult linear_recurrence(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& g, const Tensor& h0,
                                   const RecurrenceOptions& opt) {
  const OpContext ctx = OpContext::current();
  RecurrenceArgs a = prepare(Op::k_linear_recurrence, q, k, v, g, Tensor(), h0, opt, ctx);
  return run(a, ctx, q, {q, k, v, g, h0});
}

}  // namespace kimi
