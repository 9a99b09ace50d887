#ifdef KIMI_LAB_CUDA
#include "core/cuda/attention/attention_cuda.h"

#include <cuda_bf16.h>

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/attention/attention.h"

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

void check_dtypes(const Tensor& q, const Tensor& k, const Tensor& v) {
  KIMI_CHECK(q.dtype() == DType::kF32 || q.dtype() == DType::kBF16,
             "causal_attention: CUDA tensors must be F32 or BF16, got {}", dtype_name(q.dtype()));
  KIMI_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(),
             "causal_attention: q {}, k {}, v {} must share one dtype", dtype_name(q.dtype()),
             dtype_name(k.dtype()), dtype_name(v.dtype()));
  KIMI_CHECK(q.device() == Device::kCUDA && k.device() == Device::kCUDA && v.device() == Device::kCUDA,
             "causal_attention: q, k, v must all be CUDA tensors");
}

}  // namespace

CudaAttention cuda_attention_fwd(const cpu::AttentionDims& d, const Tensor& q, const Tensor& k,
                                 const Tensor& v, ComputePrecision prec) {
  check_dtypes(q, k, v);
  KIMI_CHECK(d.D <= 256 && d.Dv <= 256, "causal_attention: CUDA head dims must be <= 256, got D={} Dv={}",
             d.D, d.Dv);
  CudaAttention r;
  r.q = q.detach().contiguous();
  r.k = k.detach().contiguous();
  r.v = v.detach().contiguous();
  r.o = Tensor::empty({d.B, d.Tq, d.Hq, d.Dv}, q.dtype(), Device::kCUDA);
  r.lse = Tensor::empty({d.B, d.Hq, d.Tq}, DType::kF32, Device::kCUDA);
  if (q.dtype() == DType::kBF16) {
    using T = __nv_bfloat16;
    cuda::causal_attention_fwd<T>(d, cptr<T>(r.q), cptr<T>(r.k), cptr<T>(r.v), mptr<T>(r.o),
                                  r.lse.data<float>(), prec, cuda::stream());
  } else {
    cuda::causal_attention_fwd<float>(d, r.q.data<float>(), r.k.data<float>(), r.v.data<float>(),
                                      r.o.data<float>(), r.lse.data<float>(), prec, cuda::stream());
  }
  return r;
}

std::vector<Tensor> cuda_attention_bwd(const cpu::AttentionDims& d, const CudaAttention& f,
                                       const Tensor& d_o, ComputePrecision prec) {
  Tensor g = d_o.to(f.q.dtype()).contiguous();
  KIMI_CHECK(g.device() == Device::kCUDA, "causal_attention: the gradient must be a CUDA tensor");
  Tensor dq = Tensor::empty(f.q.shape(), f.q.dtype(), Device::kCUDA);
  Tensor dk = Tensor::empty(f.k.shape(), f.k.dtype(), Device::kCUDA);
  Tensor dv = Tensor::empty(f.v.shape(), f.v.dtype(), Device::kCUDA);
  if (f.q.dtype() == DType::kBF16) {
    using T = __nv_bfloat16;
    cuda::causal_attention_bwd<T>(d, cptr<T>(f.q), cptr<T>(f.k), cptr<T>(f.v), cptr<T>(f.o),
                                  f.lse.data<float>(), cptr<T>(g), mptr<T>(dq), mptr<T>(dk),
                                  mptr<T>(dv), prec, cuda::stream());
  } else {
    cuda::causal_attention_bwd<float>(d, f.q.data<float>(), f.k.data<float>(), f.v.data<float>(),
                                      f.o.data<float>(), f.lse.data<float>(), g.data<float>(),
                                      dq.data<float>(), dk.data<float>(), dv.data<float>(), prec,
                                      cuda::stream());
  }
  return {dq, dk, dv};
}

}  // namespace kimi
#endif  // KIMI_LAB_CUDA
