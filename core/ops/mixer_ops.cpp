// The linear-recurrence ops (delta rule, gated linear recurrence): shape checks at the boundary,
// raw kernels inside, one tape node each. Attention and RoPE: attention_ops.cpp.
#include "core/ops/mixer_ops.h"

#include <cmath>

#include "core/autograd/autograd.h"
#ifdef KIMI_LAB_CUDA
#include "core/cuda/delta_rule/recurrence_cuda.h"
#endif

namespace kimi {

RecurrenceForm recurrence_form_from_name(const std::string& name) {
  if (name == "chunk") return RecurrenceForm::kChunk;
  if (name == "recurrent") return RecurrenceForm::kRecurrent;
  throw UserError(fmt::format("unknown recurrence form '{}' (chunk, recurrent)", name));
}

namespace {

// Checked shapes of one recurrence call, and contiguous detached inputs.
struct RecurrenceCall {
  cpu::RecurrenceDims dims{};
  Tensor q, k, v, g, beta, h0;
};

RecurrenceCall prepare(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                       const Tensor& beta, const Tensor& h0, const RecurrenceOptions& opt) {
  KIMI_CHECK(q.dim() == 4 && k.shape() == q.shape() && v.dim() == 4, "{}: q {} k {} v {} (want [B,T,H,K], [B,T,H,V])",
             op, shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), K = q.size(3), V = v.size(3);
  KIMI_CHECK(v.size(0) == B && v.size(1) == T && v.size(2) == H, "{}: v {} does not match q {}", op,
             shape_str(v.shape()), shape_str(q.shape()));
  if (opt.gate == GateKind::kPerChannel)
    KIMI_CHECK(g.defined() && g.shape() == q.shape(), "{}: per-channel g must be [B,T,H,K]={}", op, shape_str(q.shape()));
  if (opt.gate == GateKind::kScalar)
    KIMI_CHECK(g.defined() && g.shape() == Shape({B, T, H}), "{}: scalar g must be [B,T,H]", op);
  if (beta.defined()) KIMI_CHECK(beta.shape() == Shape({B, T, H}), "{}: beta must be [B,T,H]", op);
  if (h0.defined()) KIMI_CHECK(h0.shape() == Shape({B, H, K, V}), "{}: h0 must be [B,H,K,V]", op);
  KIMI_CHECK(opt.chunk > 0, "{}: chunk size {}", op, opt.chunk);
  for (const Tensor* t : {&k, &v, &g, &beta, &h0})
    if (t->defined()) check_same_device(q, *t, op);
#ifndef KIMI_LAB_CUDA
  check_cpu(q, op);
#endif
  RecurrenceCall c;
  const double scale = opt.scale < 0 ? 1.0 / std::sqrt(static_cast<double>(K)) : opt.scale;
  c.dims = {B, T, H, K, V, opt.gate, scale, opt.chunk};
  // The CUDA glue converts each input to the kernels' dtype itself (autocast: BF16 q, k, v with
  // F32 gates); the CPU kernels take one dtype.
  const bool mixed_ok = q.device() == Device::kCUDA;
  auto prep = [&](const Tensor& t) {
    if (!t.defined()) return Tensor();
    KIMI_CHECK(t.dtype() == q.dtype() || (mixed_ok && is_floating(t.dtype())),
               "{}: mixed dtypes {} and {}", op, dtype_name(t.dtype()), dtype_name(q.dtype()));
    return t.detach().contiguous();
  };
  c.q = prep(q), c.k = prep(k), c.v = prep(v), c.beta = prep(beta);
  // On the GPU states are F32 whatever the activations' dtype (bf16 inputs, fp32 state).
  const bool f32_state = q.device() == Device::kCUDA && h0.defined() && h0.dtype() == DType::kF32;
  c.h0 = f32_state ? h0.detach().contiguous() : prep(h0);
  if (opt.gate != GateKind::kNone) c.g = prep(g);
  return c;
}

template <class T>
const T* ptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
template <class T>
T* mptr(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

Tensor empty_like_or_none(const Tensor& t) {
  return t.defined() ? Tensor::empty(t.shape(), t.dtype()) : Tensor();
}

#ifdef KIMI_LAB_CUDA
// One tape node over the CUDA kernels (core/cuda/delta_rule/recurrence_cuda.h); `inputs` as the op
// received them, in the order of its gradients.
RecurrenceResult cuda_recurrence(const RecurrenceCall& c, bool delta, const RecurrenceOptions& opt,
                                 const std::vector<Tensor>& inputs) {
  CudaRecurrenceInputs in{c.dims, delta, opt.form == RecurrenceForm::kChunk, c.q, c.k, c.v, c.g, c.beta, c.h0};
  std::vector<Tensor> fwd = cuda_recurrence_fwd(in);
  const char* name = delta ? "delta_rule" : "linear_recurrence";
  auto outs = record_multi(name, {fwd[0], fwd[1]}, inputs, [in, delta](const std::vector<Tensor>& go) {
    std::vector<Tensor> dx = cuda_recurrence_bwd(in, go[0], go[1]);
    if (!delta) dx.erase(dx.begin() + 4);  // no beta
    return dx;
  });
  return {outs[0], outs[1]};
}
#endif

}  // namespace

RecurrenceResult delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                            const Tensor& beta, const Tensor& h0, const RecurrenceOptions& opt) {
  KIMI_CHECK(beta.defined(), "delta_rule: beta is required");
  RecurrenceCall c = prepare("delta_rule", q, k, v, g, beta, h0, opt);
#ifdef KIMI_LAB_CUDA
  if (q.device() == Device::kCUDA) return cuda_recurrence(c, true, opt, {q, k, v, g, beta, h0});
#endif
  const auto& d = c.dims;
  Tensor o = Tensor::empty({d.B, d.T, d.H, d.V}, q.dtype());
  Tensor ht = Tensor::empty({d.B, d.H, d.K, d.V}, q.dtype());
  const bool chunk = opt.form == RecurrenceForm::kChunk;
  dispatch_float(q.dtype(), "delta_rule", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    auto fwd = chunk ? cpu::delta_rule_chunk_fwd<T> : cpu::delta_rule_recurrent_fwd<T>;
    fwd(d, c.q.data<T>(), c.k.data<T>(), c.v.data<T>(), ptr<T>(c.g), c.beta.data<T>(), ptr<T>(c.h0),
        o.data<T>(), ht.data<T>());
  });
  std::vector<Tensor> inputs = {q, k, v, g, beta, h0};
  // Gradients of all six inputs from (do, dht), recomputing states from the saved inputs.
  auto outs = record_multi("delta_rule", {o, ht}, inputs, [c, chunk](const std::vector<Tensor>& go) {
    const auto& d = c.dims;
    Tensor gdo = go[0].contiguous(), gdht = go[1].contiguous();
    Tensor dq = empty_like_or_none(c.q), dk = empty_like_or_none(c.k), dv = empty_like_or_none(c.v);
    Tensor dg = empty_like_or_none(c.g), dbeta = empty_like_or_none(c.beta), dh0 = empty_like_or_none(c.h0);
    dispatch_float(c.q.dtype(), "delta_rule", [&](auto tag_) {
      using T = KIMI_SCALAR_T(tag_);
      auto bwd = chunk ? cpu::delta_rule_chunk_bwd<T> : cpu::delta_rule_recurrent_bwd<T>;
      bwd(d, c.q.data<T>(), c.k.data<T>(), c.v.data<T>(), ptr<T>(c.g), c.beta.data<T>(), ptr<T>(c.h0),
          gdo.data<T>(), gdht.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>(), mptr<T>(dg),
          dbeta.data<T>(), mptr<T>(dh0));
    });
    return std::vector<Tensor>{dq, dk, dv, dg, dbeta, dh0};
  });
  return {outs[0], outs[1]};
}

RecurrenceResult linear_recurrence(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                                   const Tensor& h0, const RecurrenceOptions& opt) {
  RecurrenceCall c = prepare("linear_recurrence", q, k, v, g, Tensor(), h0, opt);
#ifdef KIMI_LAB_CUDA
  if (q.device() == Device::kCUDA) return cuda_recurrence(c, false, opt, {q, k, v, g, h0});
#endif
  const auto& d = c.dims;
  Tensor o = Tensor::empty({d.B, d.T, d.H, d.V}, q.dtype());
  Tensor ht = Tensor::empty({d.B, d.H, d.K, d.V}, q.dtype());
  const bool chunk = opt.form == RecurrenceForm::kChunk;
  dispatch_float(q.dtype(), "linear_recurrence", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    auto fwd = chunk ? cpu::linear_recurrence_chunk_fwd<T> : cpu::linear_recurrence_recurrent_fwd<T>;
    fwd(d, c.q.data<T>(), c.k.data<T>(), c.v.data<T>(), ptr<T>(c.g), ptr<T>(c.h0), o.data<T>(), ht.data<T>());
  });
  auto outs = record_multi("linear_recurrence", {o, ht}, {q, k, v, g, h0}, [c, chunk](const std::vector<Tensor>& go) {
    const auto& d = c.dims;
    Tensor gdo = go[0].contiguous(), gdht = go[1].contiguous();
    Tensor dq = empty_like_or_none(c.q), dk = empty_like_or_none(c.k), dv = empty_like_or_none(c.v);
    Tensor dg = empty_like_or_none(c.g), dh0 = empty_like_or_none(c.h0);
    dispatch_float(c.q.dtype(), "linear_recurrence", [&](auto tag_) {
      using T = KIMI_SCALAR_T(tag_);
      auto bwd = chunk ? cpu::linear_recurrence_chunk_bwd<T> : cpu::linear_recurrence_recurrent_bwd<T>;
      bwd(d, c.q.data<T>(), c.k.data<T>(), c.v.data<T>(), ptr<T>(c.g), ptr<T>(c.h0), gdo.data<T>(),
          gdht.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>(), mptr<T>(dg), mptr<T>(dh0));
    });
    return std::vector<Tensor>{dq, dk, dv, dg, dh0};
  });
  return {outs[0], outs[1]};
}

}  // namespace kimi
