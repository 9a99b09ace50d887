// Tensor glue of causal_conv1d / embedding on CUDA (sequence_cuda.h). Built only with
// -DKIMI_LAB_CUDA=ON.
#ifdef KIMI_LAB_CUDA
#include "core/cuda/sequence/sequence_cuda.h"

#include "core/autograd/autograd.h"
#include "core/cuda/sequence/sequence.h"
#include "core/cuda/runtime/cuda_tensor.h"

namespace kimi {
namespace {

void check_on_cuda(const Tensor& t, const char* op) {
  if (t.defined())
    KIMI_CHECK(t.device() == Device::kCUDA, "{}: {} with a CUDA input", op, t.str());
}

Tensor detached_contiguous(const Tensor& t) { return t.defined() ? t.detach().contiguous() : t; }

const void* ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
void* mptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

// The upstream gradient, detached and contiguous, on the GPU, in dtype dt.
Tensor grad_as(const Tensor& g, DType dt) {
  Tensor r = g.detach();
  if (r.device() != Device::kCUDA) r = r.to(Device::kCUDA);
  if (r.dtype() != dt) r = r.to(dt);
  return r.contiguous();
}

}  // namespace

// Same math as the CPU op (sequence_ops.cpp) without materialising the padded input: the
// kernels read prefix | x by padded time index.
Tensor cuda_causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias,
                          const Tensor& prefix) {
  const DType dt = x.dtype();
  check_cuda_float(dt, "causal_conv1d");
  check_on_cuda(bias, "causal_conv1d");
  check_on_cuda(prefix, "causal_conv1d");
  const int64_t B = x.size(0), Tn = x.size(1), D = x.size(2), W = w.size(1);
  const Tensor xc = detached_contiguous(x), wc = detached_contiguous(w),
               bc = detached_contiguous(bias), pc = detached_contiguous(prefix);
  Tensor y = Tensor::empty({B, Tn, D}, dt, Device::kCUDA);
  cuda::causal_conv1d_fwd(elem_type(dt), B, Tn, D, W, xc.raw_data(), wc.raw_data(), ptr(bc), ptr(pc),
                          y.raw_data());
  const bool has_bias = bias.defined(), has_prefix = prefix.defined();
  std::vector<Tensor> inputs = {x, w};
  if (has_bias) inputs.push_back(bias);
  if (has_prefix) inputs.push_back(prefix);
  return record(
      "causal_conv1d", y, inputs, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        const Tensor gc = grad_as(g[0], dt);
        Tensor dx = Tensor::empty({B, Tn, D}, dt, Device::kCUDA);
        Tensor dw = Tensor::empty({D, W}, dt, Device::kCUDA);
        Tensor db = has_bias ? Tensor::empty({D}, dt, Device::kCUDA) : Tensor();
        Tensor dp = has_prefix ? Tensor::empty({B, W - 1, D}, dt, Device::kCUDA) : Tensor();
        cuda::causal_conv1d_bwd(elem_type(dt), B, Tn, D, W, gc.raw_data(), xc.raw_data(),
                                wc.raw_data(), ptr(pc), dx.raw_data(), dw.raw_data(), mptr(db),
                                mptr(dp));
        std::vector<Tensor> grads = {dx, dw};
        if (has_bias) grads.push_back(db);
        if (has_prefix) grads.push_back(dp);
        return grads;
      });
}

// out[..., :] = weight[ids[...], :];  dweight[v, :] = sum_{i: ids[i] = v} dout[i, :], scattered
// with atomics into an fp32 (fp64 for F64) buffer, then converted to the weight's dtype.
Tensor cuda_embedding(const Tensor& weight, const Tensor& ids) {
  const DType dt = weight.dtype();
  check_cuda_float(dt, "embedding");
  const int64_t V = weight.size(0), D = weight.size(1), n = ids.numel();
  Tensor idc;
  if (ids.device() == Device::kCPU) {  // checked on the host for free, then uploaded
    const std::vector<int64_t> host = ids.to_vector<int64_t>();
    for (int64_t i = 0; i < n; ++i)
      KIMI_CHECK(host[i] >= 0 && host[i] < V,
                 "embedding: id {} at position {} out of range [0, {})", host[i], i, V);
    idc = ids.contiguous().to(Device::kCUDA);
  } else {
    // One small read back per call: an out-of-range id must throw, not read stray memory.
    idc = ids.contiguous();
    const int64_t bad = cuda::embedding_first_bad_id(elem_type(idc.dtype()), n, V, idc.raw_data());
    if (bad >= 0) {
      const auto id = static_cast<int64_t>(idc.reshape({n}).narrow(0, bad, 1).item());
      KIMI_FAIL("embedding: id {} at position {} out of range [0, {})", id, bad, V);
    }
  }
  const Tensor wc = weight.detach().contiguous();
  Shape out_shape = ids.shape();
  out_shape.push_back(D);
  Tensor y = Tensor::empty(out_shape, dt, Device::kCUDA);
  cuda::embedding_fwd(elem_type(dt), elem_type(idc.dtype()), n, V, D, idc.raw_data(), wc.raw_data(),
                      y.raw_data());
  return record("embedding", y, {weight}, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    const Tensor gc = grad_as(g[0], dt);
    const DType acc_dt = dt == DType::kF64 ? DType::kF64 : DType::kF32;
    Tensor acc = Tensor::zeros({V, D}, acc_dt, Device::kCUDA);
    cuda::embedding_bwd(elem_type(dt), elem_type(idc.dtype()), n, V, D, idc.raw_data(), gc.raw_data(),
                        acc.raw_data());
    return {acc.dtype() == dt ? acc : acc.to(dt)};
  });
}

}  // namespace kimi
#endif  // KIMI_LAB_CUDA
