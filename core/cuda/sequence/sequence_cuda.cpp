// The CUDA table of the sequence ops (core/backend/sequence_kernels.h) over the kernels of
// sequence.h. F32, BF16 (fp32 math) or F64. The conv kernels read prefix | x by padded time
// index, so no padded copy of the input is made (same math as core/cpu/sequence.cpp).
#include "core/backend/sequence_kernels.h"
#include "core/cuda/runtime/cuda_tensor.h"
#include "core/cuda/sequence/sequence.h"

namespace kimi {
namespace {

void check_on_cuda(const Tensor& t, const char* op) {
  if (t.defined()) KIMI_CHECK(t.device() == Device::kCUDA, "{}: {} with a CUDA input", op, t.str());
}

const void* ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

// The upstream gradient, detached and contiguous, on the GPU, in dtype dt.
Tensor grad_as(const Tensor& g, DType dt) {
  Tensor r = g.detach();
  if (r.device() != Device::kCUDA) r = r.to(Device::kCUDA);
  if (r.dtype() != dt) r = r.to(dt);
  return r.contiguous();
}

Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& prefix) {
  const DType dt = x.dtype();
  check_cuda_float(dt, "causal_conv1d");
  check_on_cuda(bias, "causal_conv1d");
  check_on_cuda(prefix, "causal_conv1d");
  const int64_t B = x.size(0), Tn = x.size(1), D = x.size(2), W = w.size(1);
  Tensor y = Tensor::empty({B, Tn, D}, dt, Device::kCUDA);
  cuda::causal_conv1d_fwd(elem_type(dt), B, Tn, D, W, x.raw_data(), w.raw_data(), ptr(bias),
                          ptr(prefix), y.raw_data());
  return y;
}

void causal_conv1d_backward(const Tensor& x, const Tensor& w, const Tensor& prefix,
                            const Tensor& dy, Tensor* dx, Tensor* dw, Tensor* dbias,
                            Tensor* dprefix) {
  const DType dt = x.dtype();
  const int64_t B = x.size(0), Tn = x.size(1), D = x.size(2), W = w.size(1);
  const Tensor gc = grad_as(dy, dt);
  *dx = Tensor::empty({B, Tn, D}, dt, Device::kCUDA);
  *dw = Tensor::empty({D, W}, dt, Device::kCUDA);
  if (dbias) *dbias = Tensor::empty({D}, dt, Device::kCUDA);
  if (dprefix) *dprefix = Tensor::empty({B, W - 1, D}, dt, Device::kCUDA);
  cuda::causal_conv1d_bwd(elem_type(dt), B, Tn, D, W, gc.raw_data(), x.raw_data(), w.raw_data(),
                          ptr(prefix), dx->raw_data(), dw->raw_data(),
                          dbias ? dbias->raw_data() : nullptr,
                          dprefix ? dprefix->raw_data() : nullptr);
}

Tensor embedding(const Tensor& weight, const Tensor& ids, Tensor* ids_saved) {
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
  *ids_saved = idc;
  return y;
}

// Scattered with atomics into an fp32 (fp64 for F64) buffer, then converted to dy's dtype.
Tensor embedding_backward(const Tensor& ids, const Tensor& dy, int64_t num_rows) {
  const DType dt = dy.dtype();
  check_cuda_float(dt, "embedding");
  const int64_t n = ids.numel(), D = dy.size(-1);
  KIMI_CHECK(dy.numel() == n * D, "embedding backward: {} ids for gradient {}", n, dy.str());
  const Tensor gc = grad_as(dy, dt), idc = ids.contiguous();
  const DType acc_dt = dt == DType::kF64 ? DType::kF64 : DType::kF32;
  Tensor acc = Tensor::zeros({num_rows, D}, acc_dt, Device::kCUDA);
  cuda::embedding_bwd(elem_type(dt), elem_type(idc.dtype()), n, num_rows, D, idc.raw_data(),
                      gc.raw_data(), acc.raw_data());
  return acc.dtype() == dt ? acc : acc.to(dt);
}

}  // namespace

void register_cuda_sequence_kernels() {
  KernelTable<SequenceKernels>::set(
      Device::kCUDA, {causal_conv1d, causal_conv1d_backward, embedding, embedding_backward});
}

}  // namespace kimi
