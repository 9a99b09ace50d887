// Causal softmax attention (GQA, KV-cache offset) and RoPE: shape checks at the boundary, raw
// kernels inside, one tape node each.
#include <cmath>

#include "core/autograd/autograd.h"
#include "core/cpu/attention.h"
#include "core/cpu/rope.h"
#include "core/ops/mixer_ops.h"
#include "core/cuda/attention/attention_cuda.h"
#include "core/cuda/sequence/rope_cuda.h"

namespace kimi {

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  KIMI_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "causal_attention: q {} k {} v {}",
             shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  const int64_t B = q.size(0), Tq = q.size(1), Hq = q.size(2), D = q.size(3);
  const int64_t Tk = k.size(1), Hkv = k.size(2), Dv = v.size(3);
  KIMI_CHECK(k.size(0) == B && v.size(0) == B && v.size(1) == Tk && v.size(2) == Hkv && k.size(3) == D,
             "causal_attention: q {} k {} v {}", shape_str(q.shape()), shape_str(k.shape()), shape_str(v.shape()));
  KIMI_CHECK(Hkv > 0 && Hq % Hkv == 0, "causal_attention: {} query heads over {} kv heads", Hq, Hkv);
  KIMI_CHECK(Tq <= Tk, "causal_attention: {} queries for {} keys", Tq, Tk);
  cpu::AttentionDims d{B, Tq, Tk, Hq, Hkv, D, Dv, scale < 0 ? 1.0 / std::sqrt(static_cast<double>(D)) : scale};
#ifdef KIMI_LAB_CUDA
  if (q.device() == Device::kCUDA) {
    // The backward keeps the forward's operand precision (and its fp32 lse).
    const ComputePrecision prec = compute_precision();
    const CudaAttention fwd = cuda_attention_fwd(d, q, k, v, prec);
    return record("causal_attention", fwd.o, {q, k, v}, [=](const std::vector<Tensor>& go) -> std::vector<Tensor> {
      return cuda_attention_bwd(d, fwd, go[0], prec);
    });
  }
#endif
  check_cpu(q, "causal_attention");
  Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
  Tensor o = Tensor::empty({B, Tq, Hq, Dv}, q.dtype());
  Tensor lse = Tensor::empty({B, Hq, Tq}, q.dtype());
  dispatch_float(q.dtype(), "causal_attention", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    cpu::causal_attention_fwd<T>(d, qc.data<T>(), kc.data<T>(), vc.data<T>(), o.data<T>(), lse.data<T>());
  });
  Tensor o_saved = o;
  return record("causal_attention", o, {q, k, v}, [=](const std::vector<Tensor>& go) -> std::vector<Tensor> {
    Tensor gdo = go[0].contiguous();
    Tensor dq = Tensor::empty(qc.shape(), qc.dtype()), dk = Tensor::empty(kc.shape(), kc.dtype()),
           dv = Tensor::empty(vc.shape(), vc.dtype());
    dispatch_float(qc.dtype(), "causal_attention", [&](auto tag_) {
      using T = KIMI_SCALAR_T(tag_);
      cpu::causal_attention_bwd<T>(d, qc.data<T>(), kc.data<T>(), vc.data<T>(), o_saved.data<T>(), lse.data<T>(),
                                   gdo.data<T>(), dq.data<T>(), dk.data<T>(), dv.data<T>());
    });
    return {dq, dk, dv};
  });
}

// The rotation is orthogonal, so the backward applies its transpose (the inverse rotation).
Tensor rope(const Tensor& x, int64_t pos0, double theta) {
  KIMI_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope: x {} (want [B,T,H,D], D even)", shape_str(x.shape()));
#ifdef KIMI_LAB_CUDA
  if (x.device() == Device::kCUDA) return cuda_rope(x, pos0, theta);
#endif
  check_cpu(x, "rope");
  Tensor y = x.detach().clone();
  const Shape s = x.shape();
  dispatch_float(x.dtype(), "rope", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    cpu::rope_apply<T>(y.data<T>(), s[0], s[1], s[2], s[3], pos0, theta, false);
  });
  return record("rope", y, {x}, [=](const std::vector<Tensor>& go) -> std::vector<Tensor> {
    Tensor dx = go[0].clone();
    dispatch_float(dx.dtype(), "rope", [&](auto tag_) {
      using T = KIMI_SCALAR_T(tag_);
      cpu::rope_apply<T>(dx.data<T>(), s[0], s[1], s[2], s[3], pos0, theta, true);
    });
    return {dx};
  });
}

}  // namespace kimi
