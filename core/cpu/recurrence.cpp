// The CPU table of the linear recurrences (core/backend/recurrence_kernels.h) over the raw
// kernels of delta_rule.h: one dtype for every input (F32 or F64), computed in that dtype
// (the CPU ignores the compute precision), the chunk form with the requested chunk size.
#include "core/backend/recurrence_kernels.h"
#include "core/cpu/delta_rule.h"

namespace kimi {
namespace {

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

// The CPU kernels take one dtype: every input must have q's.
void check_one_dtype(const RecurrenceArgs& a) {
  const char* op = a.delta ? "delta_rule" : "linear_recurrence";
  for (const Tensor* t : {&a.k, &a.v, &a.g, &a.beta, &a.h0})
    KIMI_CHECK(!t->defined() || t->dtype() == a.q.dtype(), "{}: mixed dtypes {} and {}", op,
               dtype_name(t->dtype()), dtype_name(a.q.dtype()));
}

RecurrenceOutputs forward(const RecurrenceArgs& a, const OpContext&) {
  check_one_dtype(a);
  const auto& d = a.dims;
  Tensor o = Tensor::empty({d.B, d.T, d.H, d.V}, a.q.dtype());
  Tensor ht = Tensor::empty({d.B, d.H, d.K, d.V}, a.q.dtype());
  dispatch_float(a.q.dtype(), a.delta ? "delta_rule" : "linear_recurrence", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    if (a.delta) {
      auto fwd = a.chunk ? cpu::delta_rule_chunk_fwd<T> : cpu::delta_rule_recurrent_fwd<T>;
      fwd(d, a.q.data<T>(), a.k.data<T>(), a.v.data<T>(), ptr<T>(a.g), a.beta.data<T>(),
          ptr<T>(a.h0), o.data<T>(), ht.data<T>());
    } else {
      auto fwd =
          a.chunk ? cpu::linear_recurrence_chunk_fwd<T> : cpu::linear_recurrence_recurrent_fwd<T>;
      fwd(d, a.q.data<T>(), a.k.data<T>(), a.v.data<T>(), ptr<T>(a.g), ptr<T>(a.h0), o.data<T>(),
          ht.data<T>());
    }
  });
  return {o, ht};
}

RecurrenceGrads backward(const RecurrenceArgs& a, const Tensor& d_o, const Tensor& dht,
                         const OpContext&) {
  const auto& d = a.dims;
  const DType dt = a.q.dtype();
  Tensor gdo = d_o.detach().to(dt).contiguous(), gdht = dht.detach().to(dt).contiguous();
  RecurrenceGrads r{empty_like_or_none(a.q), empty_like_or_none(a.k),    empty_like_or_none(a.v),
                    empty_like_or_none(a.g), empty_like_or_none(a.beta), empty_like_or_none(a.h0)};
  dispatch_float(dt, a.delta ? "delta_rule" : "linear_recurrence", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    if (a.delta) {
      auto bwd = a.chunk ? cpu::delta_rule_chunk_bwd<T> : cpu::delta_rule_recurrent_bwd<T>;
      bwd(d, a.q.data<T>(), a.k.data<T>(), a.v.data<T>(), ptr<T>(a.g), a.beta.data<T>(),
          ptr<T>(a.h0), gdo.data<T>(), gdht.data<T>(), r.dq.data<T>(), r.dk.data<T>(),
          r.dv.data<T>(), mptr<T>(r.dg), r.dbeta.data<T>(), mptr<T>(r.dh0));
    } else {
      auto bwd =
          a.chunk ? cpu::linear_recurrence_chunk_bwd<T> : cpu::linear_recurrence_recurrent_bwd<T>;
      bwd(d, a.q.data<T>(), a.k.data<T>(), a.v.data<T>(), ptr<T>(a.g), ptr<T>(a.h0), gdo.data<T>(),
          gdht.data<T>(), r.dq.data<T>(), r.dk.data<T>(), r.dv.data<T>(), mptr<T>(r.dg),
          mptr<T>(r.dh0));
    }
  });
  return r;
}

}  // namespace

void register_cpu_recurrence_kernels() {
  KernelTable<RecurrenceKernels>::set(Device::kCPU, {forward, backward});
}

}  // namespace kimi
