// The CUDA table of the linear recurrences (core/backend/recurrence_kernels.h) over the raw
// kernels of delta_rule.cuh. Which kernels run is plan_recurrence()'s answer
// (recurrence_plan.h) for the forward's context, in both passes; each input is converted to the
// kernels' element type here (autocast: BF16 q, k, v with F32 gates), states (h0, ht, their
// gradients) are F32 on the GPU. The op asked cuda_supports() first (K <= 128, F32 / BF16, the
// chunk size), so what reaches here runs.
#include <spdlog/spdlog.h>

#include <atomic>

#include "core/backend/recurrence_kernels.h"
#include "core/cuda/delta_rule/delta_rule.cuh"
#include "core/cuda/delta_rule/recurrence_plan.h"
#include "core/cuda/runtime/allocator.h"

namespace kimi {
namespace {

using cuda::ChunkFallback;
using cuda::RecurrencePlan;

const char* op_name(const RecurrenceArgs& a) {
  return a.delta ? "delta_rule" : "linear_recurrence";
}

// The plan of this call; a form chunk that runs the recurrent kernels is logged once per
// process and reason.
RecurrencePlan plan_for(const RecurrenceArgs& a, const OpContext& ctx) {
  KIMI_CHECK(a.q.dtype() == DType::kF32 || a.q.dtype() == DType::kBF16,
             "{}: CUDA tensors must be F32 or BF16, got {}", op_name(a), dtype_name(a.q.dtype()));
  const RecurrencePlan p = cuda::plan_recurrence(a.delta, a.q.dtype() == DType::kBF16, a.dims.T,
                                                 a.dims.V, a.h0.defined(), a.chunk, ctx.precision);
  static std::atomic<bool> warned_fp32{false}, warned_wide_v{false};
  if (p.fallback == ChunkFallback::kFp32 && !warned_fp32.exchange(true))
    spdlog::warn(
        "{}: form chunk at precision fp32 runs the exact recurrent CUDA kernels (tensor "
        "cores have no fp32 mode)",
        op_name(a));
  if (p.fallback == ChunkFallback::kWideV && !warned_wide_v.exchange(true))
    spdlog::warn(
        "{}: form chunk with value head dim V = {} > {} runs the recurrent CUDA kernels "
        "(the chunk kernels tile V <= {})",
        op_name(a), a.dims.V, cuda::kCudaChunkMaxV, cuda::kCudaChunkMaxV);
  return p;
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
void run_fwd(const RecurrenceArgs& a, const RecurrencePlan& p, const Tensor& q, const Tensor& k,
             const Tensor& v, const Tensor& g, const Tensor& beta, const Tensor& h0,
             const Tensor& o, const Tensor& ht) {
  const auto& d = a.dims;
  cudaStream_t s = cuda::stream();
  if (p.decode)  // decoding: the state read once and written once
    cuda::delta_rule_decode_step<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                     cptr<Ti>(beta), fptr(h0), fmptr(ht), mptr<Ti>(o), s);
  else if (a.delta && p.chunk)
    cuda::delta_rule_chunk_fwd<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                   cptr<Ti>(beta), fptr(h0), mptr<Ti>(o), fmptr(ht), s);
  else if (a.delta)
    cuda::delta_rule_recurrent_fwd<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                       cptr<Ti>(beta), fptr(h0), mptr<Ti>(o), fmptr(ht), s);
  else if (p.chunk)
    cuda::linear_recurrence_chunk_fwd<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                          fptr(h0), mptr<Ti>(o), fmptr(ht), s);
  else
    cuda::linear_recurrence_recurrent_fwd<Ti>(d, cptr<Ti>(q), cptr<Ti>(k), cptr<Ti>(v), cptr<Ti>(g),
                                              fptr(h0), mptr<Ti>(o), fmptr(ht), s);
}

template <class Ti>
void run_bwd(const RecurrenceArgs& a, const RecurrencePlan& p, const std::vector<Tensor>& x,
             const Tensor& d_o, const Tensor& dht, const std::vector<Tensor>& dx) {
  const auto& d = a.dims;
  cudaStream_t s = cuda::stream();
  // x = {q, k, v, g, beta, h0}; dx the same order.
  if (a.delta) {
    if (p.chunk)
      cuda::delta_rule_chunk_bwd<Ti>(d, cptr<Ti>(x[0]), cptr<Ti>(x[1]), cptr<Ti>(x[2]),
                                     cptr<Ti>(x[3]), cptr<Ti>(x[4]), fptr(x[5]), cptr<Ti>(d_o),
                                     fptr(dht), mptr<Ti>(dx[0]), mptr<Ti>(dx[1]), mptr<Ti>(dx[2]),
                                     mptr<Ti>(dx[3]), mptr<Ti>(dx[4]), fmptr(dx[5]), s);
    else
      cuda::delta_rule_recurrent_bwd<Ti>(
          d, cptr<Ti>(x[0]), cptr<Ti>(x[1]), cptr<Ti>(x[2]), cptr<Ti>(x[3]), cptr<Ti>(x[4]),
          fptr(x[5]), cptr<Ti>(d_o), fptr(dht), mptr<Ti>(dx[0]), mptr<Ti>(dx[1]), mptr<Ti>(dx[2]),
          mptr<Ti>(dx[3]), mptr<Ti>(dx[4]), fmptr(dx[5]), s);
  } else if (p.chunk) {
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

// {o [B,T,H,V] in q's dtype, ht [B,H,K,V] F32}
RecurrenceOutputs forward(const RecurrenceArgs& a, const OpContext& ctx) {
  const RecurrencePlan p = plan_for(a, ctx);
  const DType ct = p.bf16 ? DType::kBF16 : DType::kF32;
  const auto& d = a.dims;
  Tensor q = as(a.q, ct), k = as(a.k, ct), v = as(a.v, ct);
  Tensor g = as(a.g, ct), beta = as(a.beta, ct), h0 = as(a.h0, DType::kF32);
  Tensor o = Tensor::empty({d.B, d.T, d.H, d.V}, ct, Device::kCUDA);
  Tensor ht = Tensor::empty({d.B, d.H, d.K, d.V}, DType::kF32, Device::kCUDA);
  if (p.bf16)
    run_fwd<__nv_bfloat16>(a, p, q, k, v, g, beta, h0, o, ht);
  else
    run_fwd<float>(a, p, q, k, v, g, beta, h0, o, ht);
  return {as(o, a.q.dtype()), ht};
}

// Gradients in the inputs' dtypes (undefined where the input is).
RecurrenceGrads backward(const RecurrenceArgs& a, const Tensor& d_o, const Tensor& dht,
                         const OpContext& ctx) {
  const RecurrencePlan p = plan_for(a, ctx);
  const DType ct = p.bf16 ? DType::kBF16 : DType::kF32;
  std::vector<Tensor> x = {as(a.q, ct), as(a.k, ct),    as(a.v, ct),
                           as(a.g, ct), as(a.beta, ct), as(a.h0, DType::kF32)};
  std::vector<Tensor> dx;
  for (int i = 0; i < 5; ++i) dx.push_back(empty_like_as(x[i], ct));
  dx.push_back(empty_like_as(x[5], DType::kF32));
  Tensor go = as(d_o.contiguous(), ct), ght = as(dht.contiguous(), DType::kF32);
  if (p.bf16)
    run_bwd<__nv_bfloat16>(a, p, x, go, ght, dx);
  else
    run_bwd<float>(a, p, x, go, ght, dx);
  const Tensor* orig[] = {&a.q, &a.k, &a.v, &a.g, &a.beta, &a.h0};
  for (int i = 0; i < 6; ++i)
    if (dx[i].defined()) dx[i] = as(dx[i], orig[i]->dtype());
  return {dx[0], dx[1], dx[2], dx[3], dx[4], dx[5]};
}

}  // namespace

void register_cuda_recurrence_kernels() {
  KernelTable<RecurrenceKernels>::set(Device::kCUDA, {forward, backward});
}

}  // namespace kimi
