#ifdef KIMI_LAB_CUDA
#include "core/cuda/delta_rule/recurrence_cuda.h"

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/delta_rule/delta_rule.cuh"
#include "core/backend/precision.h"

namespace kimi {
namespace {

// The element type the kernels run in, and whether the chunk kernels may.
struct Plan {
  DType compute;
  bool chunk;
};

Plan plan_kernel(const CudaRecurrenceInputs& in);

Plan plan_for(const CudaRecurrenceInputs& in) {
  KIMI_CHECK(in.dims.K <= 128,
             "{}: key head dim {} on CUDA (the kernels hold a state column of K <= 128 values)",
             in.delta ? "delta_rule" : "linear_recurrence", in.dims.K);
  Plan p = plan_kernel(in);
  // The chunk kernels (delta rule and linear recurrence) tile V <= 128 in shared memory; wider
  // values (GDN's expand_v = 2) recur.
  p.chunk = p.chunk && in.dims.V <= 128;
  return p;
}

Plan plan_kernel(const CudaRecurrenceInputs& in) {
  KIMI_CHECK(in.q.dtype() == DType::kF32 || in.q.dtype() == DType::kBF16,
             "{}: CUDA tensors must be F32 or BF16, got {}",
             in.delta ? "delta_rule" : "linear_recurrence", dtype_name(in.q.dtype()));
  if (in.q.dtype() == DType::kBF16) return {DType::kBF16, in.chunk};
  switch (compute_precision()) {
    case ComputePrecision::kFP32:
      return {DType::kF32, false};
    case ComputePrecision::kTF32:
      return {DType::kF32, in.chunk};
    case ComputePrecision::kBF16:
      return {DType::kBF16, in.chunk};
  }
  return {DType::kF32, false};
}

Tensor as(const Tensor& t, DType dt) {
  if (!t.defined()) return t;
  return t.dtype() == dt ? t : t.to(dt);
}

template <class Ti>
const Ti* cptr(const Tensor& t) {
  return t.defined() ? static_cast<const Ti*>(t.raw_data()) : nullptr;
}
template <class Ti>
Ti* mptr(const Tensor& t) {
  return t.defined() ? static_cast<Ti*>(t.raw_data()) : nullptr;
}
const float* fptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* fmptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

Tensor empty_like_as(const Tensor& t, DType dt) {
  return t.defined() ? Tensor::empty(t.shape(), dt, Device::kCUDA) : Tensor();
}

template <class Ti>
void run_fwd(const CudaRecurrenceInputs& in, bool chunk, const Tensor& q, const Tensor& k,
             const Tensor& v, const Tensor& g, const Tensor& beta, const Tensor& h0,
             const Tensor& o, const Tensor& ht) {
  const auto& d = in.dims;
  cudaStream_t s = cuda::stream();
  if (in.delta && d.T == 1 && h0.defined())  // decoding: the state read once and written once
    cuda::delta_rule_decode_step<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                     cptr<Ti>(beta), fptr(h0), fmptr(ht), mptr<Ti>(o), s);
  else if (in.delta && chunk)
    cuda::delta_rule_chunk_fwd<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                   cptr<Ti>(beta), fptr(h0), mptr<Ti>(o), fmptr(ht), s);
  else if (in.delta)
    cuda::delta_rule_recurrent_fwd<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                       cptr<Ti>(beta), fptr(h0), mptr<Ti>(o), fmptr(ht), s);
  else if (chunk)
    cuda::linear_recurrence_chunk_fwd<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                          fptr(h0), mptr<Ti>(o), fmptr(ht), s);
  else
    cuda::linear_recurrence_recurrent_fwd<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                              fptr(h0), mptr<Ti>(o), fmptr(ht), s);
}

template <class Ti>
void run_bwd(const CudaRecurrenceInputs& in, bool chunk, const std::vector<Tensor>& x,
             const Tensor& d_o, const Tensor& dht, const std::vector<Tensor>& dx) {
  const auto& d = in.dims;
  cudaStream_t s = cuda::stream();
  // x = {q, k, v, g, beta, h0}; dx the same order.
  if (in.delta) {
    if (chunk)
      cuda::delta_rule_chunk_bwd<Ti>(d, cptr<Ti>(x[0]), cptr<Ti>(x[1]), cptr<Ti>(x[2]),
                                     cptr<Ti>(x[3]), cptr<Ti>(x[4]), fptr(x[5]), cptr<Ti>(d_o),
                                     fptr(dht), mptr<Ti>(dx[0]), mptr<Ti>(dx[1]), mptr<Ti>(dx[2]),
                                     mptr<Ti>(dx[3]), mptr<Ti>(dx[4]), fmptr(dx[5]), s);
    else
      cuda::delta_rule_recurrent_bwd<Ti>(
          d, cptr<Ti>(x[0]), cptr<Ti>(x[1]), cptr<Ti>(x[2]), cptr<Ti>(x[3]), cptr<Ti>(x[4]),
          fptr(x[5]), cptr<Ti>(d_o), fptr(dht), mptr<Ti>(dx[0]), mptr<Ti>(dx[1]), mptr<Ti>(dx[2]),
          mptr<Ti>(dx[3]), mptr<Ti>(dx[4]), fmptr(dx[5]), s);
  } else if (chunk) {
    cuda::linear_recurrence_chunk_bwd<Ti>(d, cptr<Ti>(x[0]), cptr<Ti>(x[1]), cptr<Ti>(x[2]),
                                          cptr<Ti>(x[3]), fptr(x[5]), cptr<Ti>(d_o), fptr(dht),
                                          mptr<Ti>(dx[0]), mptr<Ti>(dx[1]), mptr<Ti>(dx[2]),
                                          mptr<Ti>(dx[3]), fmptr(dx[5]), s);
  } else {
    cuda::linear_recurrence_recurrent_bwd<Ti>(d, cptr<Ti>(x[0]), cptr<Ti>(x[1]), cptr<Ti>(x[2]),
                                              cptr<Ti>(x[3]), fptr(x[5]), cptr<Ti>(d_o), fptr(dht),
                                              mptr<Ti>(dx[0]), mptr<Ti>(dx[1]), mptr<Ti>(dx[2]),
                                              mptr<Ti>(dx[3]), fmptr(dx[5]), s);
  }
}

}  // namespace

std::vector<Tensor> cuda_recurrence_fwd(const CudaRecurrenceInputs& in) {
  const Plan p = plan_for(in);
  const auto& d = in.dims;
  Tensor q = as(in.q, p.compute), k = as(in.k, p.compute), v = as(in.v, p.compute);
  Tensor g = as(in.g, p.compute), beta = as(in.beta, p.compute), h0 = as(in.h0, DType::kF32);
  Tensor o = Tensor::empty({d.B, d.T, d.H, d.V}, p.compute, Device::kCUDA);
  Tensor ht = Tensor::empty({d.B, d.H, d.K, d.V}, DType::kF32, Device::kCUDA);
  if (p.compute == DType::kBF16)
    run_fwd<__nv_bfloat16>(in, p.chunk, q, k, v, g, beta, h0, o, ht);
  else
    run_fwd<float>(in, p.chunk, q, k, v, g, beta, h0, o, ht);
  return {as(o, in.q.dtype()), ht};
}

std::vector<Tensor> cuda_recurrence_bwd(const CudaRecurrenceInputs& in, const Tensor& d_o,
                                        const Tensor& dht) {
  const Plan p = plan_for(in);
  std::vector<Tensor> x = {as(in.q, p.compute), as(in.k, p.compute),    as(in.v, p.compute),
                           as(in.g, p.compute), as(in.beta, p.compute), as(in.h0, DType::kF32)};
  std::vector<Tensor> dx;
  for (int i = 0; i < 5; ++i) dx.push_back(empty_like_as(x[i], p.compute));
  dx.push_back(empty_like_as(x[5], DType::kF32));
  Tensor go = as(d_o.contiguous(), p.compute), ght = as(dht.contiguous(), DType::kF32);
  if (p.compute == DType::kBF16)
    run_bwd<__nv_bfloat16>(in, p.chunk, x, go, ght, dx);
  else
    run_bwd<float>(in, p.chunk, x, go, ght, dx);
  const Tensor* orig[] = {&in.q, &in.k, &in.v, &in.g, &in.beta, &in.h0};
  for (int i = 0; i < 6; ++i)
    if (dx[i].defined()) dx[i] = as(dx[i], orig[i]->dtype());
  return dx;
}

}  // namespace kimi
#endif  // KIMI_LAB_CUDA
