// The CUDA table of causal attention and RoPE (core/backend/attention_kernels.h) over the
// kernels of attention.h and core/cuda/sequence/rope.h. q, k, v: F32 or BF16, one dtype (the op
// checked both and asked cuda_supports(): head dims <= 256). The products run with the operand
// precision of the forward's context, in both passes; BF16 tensors take bf16 operands unless
// it is fp32. lse is F32 whatever the inputs' dtype.
#include <cuda_bf16.h>

#include "core/backend/attention_kernels.h"
#include "core/cuda/attention/attention.h"
#include "core/cuda/runtime/allocator.h"
#include "core/cuda/sequence/rope_cuda.h"

namespace kimi {
namespace {

template <class Ti>
const Ti* cptr(const Tensor& t) {
  return static_cast<const Ti*>(t.raw_data());
}
template <class Ti>
Ti* mptr(const Tensor& t) {
  return static_cast<Ti*>(t.raw_data());
}

Tensor attention(const AttentionDims& d, const Tensor& q, const Tensor& k, const Tensor& v,
                 const OpContext& ctx, AttentionSaved* saved) {
  KIMI_CHECK(q.dtype() == DType::kF32 || q.dtype() == DType::kBF16,
             "causal_attention: CUDA tensors must be F32 or BF16, got {}", dtype_name(q.dtype()));
  AttentionSaved& r = *saved;
  r.q = q.detach().contiguous();
  r.k = k.detach().contiguous();
  r.v = v.detach().contiguous();
  r.o = Tensor::empty({d.B, d.Tq, d.Hq, d.Dv}, q.dtype(), Device::kCUDA);
  r.lse = Tensor::empty({d.B, d.Hq, d.Tq}, DType::kF32, Device::kCUDA);
  if (q.dtype() == DType::kBF16) {
    using T = __nv_bfloat16;
    cuda::causal_attention_fwd<T>(d, cptr<T>(r.q), cptr<T>(r.k), cptr<T>(r.v), mptr<T>(r.o),
                                  r.lse.data<float>(), ctx.precision, cuda::stream());
  } else {
    cuda::causal_attention_fwd<float>(d, r.q.data<float>(), r.k.data<float>(), r.v.data<float>(),
                                      r.o.data<float>(), r.lse.data<float>(), ctx.precision,
                                      cuda::stream());
  }
  return r.o;
}

std::vector<Tensor> attention_backward(const AttentionDims& d, const AttentionSaved& f,
                                       const Tensor& d_o, const OpContext& ctx) {
  Tensor g = d_o.detach().to(f.q.dtype()).contiguous();
  KIMI_CHECK(g.device() == Device::kCUDA, "causal_attention: the gradient must be a CUDA tensor");
  Tensor dq = Tensor::empty(f.q.shape(), f.q.dtype(), Device::kCUDA);
  Tensor dk = Tensor::empty(f.k.shape(), f.k.dtype(), Device::kCUDA);
  Tensor dv = Tensor::empty(f.v.shape(), f.v.dtype(), Device::kCUDA);
  if (f.q.dtype() == DType::kBF16) {
    using T = __nv_bfloat16;
    cuda::causal_attention_bwd<T>(d, cptr<T>(f.q), cptr<T>(f.k), cptr<T>(f.v), cptr<T>(f.o),
                                  f.lse.data<float>(), cptr<T>(g), mptr<T>(dq), mptr<T>(dk),
                                  mptr<T>(dv), ctx.precision, cuda::stream());
  } else {
    cuda::causal_attention_bwd<float>(d, f.q.data<float>(), f.k.data<float>(), f.v.data<float>(),
                                      f.o.data<float>(), f.lse.data<float>(), g.data<float>(),
                                      dq.data<float>(), dk.data<float>(), dv.data<float>(),
                                      ctx.precision, cuda::stream());
  }
  return {dq, dk, dv};
}

Tensor rope(const Tensor& x, int64_t pos0, double theta) {
  return cuda_rope(x, pos0, theta, /*inverse=*/false);
}
Tensor rope_backward(const Tensor& dy, int64_t pos0, double theta) {
  return cuda_rope(dy, pos0, theta, /*inverse=*/true);
}

}  // namespace

void register_cuda_attention_kernels() {
  KernelTable<AttentionKernels>::set(Device::kCUDA,
                                     {attention, attention_backward, rope, rope_backward});
}

}  // namespace kimi
