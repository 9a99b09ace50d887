// The CPU table of causal attention and RoPE (core/backend/attention_kernels.h) over the raw
// kernels of attention.h and rope.h, computed in the tensors' dtype (F32 or F64; the CPU
// ignores the compute precision). lse is kept in the inputs' dtype.
#include "core/backend/attention_kernels.h"
#include "core/cpu/attention.h"
#include "core/cpu/rope.h"

namespace kimi {
namespace {

Tensor attention(const AttentionDims& d, const Tensor& q, const Tensor& k, const Tensor& v,
                 const OpContext&, AttentionSaved* saved) {
  AttentionSaved& s = *saved;
  s.q = q.detach().contiguous(), s.k = k.detach().contiguous(), s.v = v.detach().contiguous();
  s.o = Tensor::empty({d.B, d.Tq, d.Hq, d.Dv}, q.dtype());
  s.lse = Tensor::empty({d.B, d.Hq, d.Tq}, q.dtype());
  dispatch_float(q.dtype(), "causal_attention", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    cpu::causal_attention_fwd<T>(d, s.q.data<T>(), s.k.data<T>(), s.v.data<T>(), s.o.data<T>(),
                                 s.lse.data<T>());
  });
  return s.o;
}

std::vector<Tensor> attention_backward(const AttentionDims& d, const AttentionSaved& s,
                                       const Tensor& d_o, const OpContext&) {
  Tensor gdo = d_o.detach().to(s.q.dtype()).contiguous();
  Tensor dq = Tensor::empty(s.q.shape(), s.q.dtype()), dk = Tensor::empty(s.k.shape(), s.k.dtype()),
         dv = Tensor::empty(s.v.shape(), s.v.dtype());
  dispatch_float(s.q.dtype(), "causal_attention", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    cpu::causal_attention_bwd<T>(d, s.q.data<T>(), s.k.data<T>(), s.v.data<T>(), s.o.data<T>(),
                                 s.lse.data<T>(), gdo.data<T>(), dq.data<T>(), dk.data<T>(),
                                 dv.data<T>());
  });
  return {dq, dk, dv};
}

// A rotated copy of x (clone: contiguous, no graph).
Tensor rotated(const Tensor& x, int64_t pos0, double theta, bool inverse) {
  Tensor y = x.clone();
  const DType dt = y.dtype();
  const Shape s = y.shape();
  dispatch_float(dt, "rope", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    cpu::rope_apply<T>(y.data<T>(), s[0], s[1], s[2], s[3], pos0, theta, inverse);
  });
  return y;
}

Tensor rope(const Tensor& x, int64_t pos0, double theta) {
  return rotated(x, pos0, theta, /*inverse=*/false);
}
Tensor rope_backward(const Tensor& dy, int64_t pos0, double theta) {
  return rotated(dy, pos0, theta, /*inverse=*/true);
}

}  // namespace

void register_cpu_attention_kernels() {
  KernelTable<AttentionKernels>::set(Device::kCPU,
                                     {attention, attention_backward, rope, rope_backward});
}

}  // namespace kimi
