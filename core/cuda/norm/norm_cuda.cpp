// The CUDA table of the norms (core/backend/norm_kernels.h) over the kernels of norm.h. r is
// kept per row in the compute type: F64 for F64 x, else F32.
#include "core/backend/norm_kernels.h"
#include "core/cuda/norm/norm.h"
#include "core/cuda/runtime/cuda_tensor.h"

namespace kimi {
namespace {

cuda::ElemType elem(const Tensor& t) { return elem_type(t.dtype()); }

Tensor norm(const Tensor& xc, const Tensor& wc, double div, double eps, Tensor* rstd,
            const char* /*name*/) {
  check_cuda_float(xc, "norm");
  const int64_t n = xc.size(-1), rows = n ? xc.numel() / n : 0;
  Tensor y = Tensor::empty(xc.shape(), xc.dtype(), Device::kCUDA);
  *rstd =
      Tensor::empty({rows}, xc.dtype() == DType::kF64 ? DType::kF64 : DType::kF32, Device::kCUDA);
  cuda::norm_forward(elem(xc), rows, n, div, eps, xc.raw_data(),
                     wc.defined() ? wc.raw_data() : nullptr, y.raw_data(), rstd->raw_data());
  return y;
}

void norm_backward(const Tensor& xc, const Tensor& wc, const Tensor& rstd, const Tensor& dy,
                   double div, bool need_x, bool need_w, Tensor* dx, Tensor* dw,
                   const char* /*name*/) {
  const int64_t n = xc.size(-1), rows = n ? xc.numel() / n : 0;
  Tensor gc = dy.detach().to(xc.dtype()).contiguous();
  if (need_x) {
    *dx = Tensor::empty(xc.shape(), xc.dtype(), Device::kCUDA);
    cuda::norm_backward_x(elem(xc), rows, n, div, xc.raw_data(),
                          wc.defined() ? wc.raw_data() : nullptr, rstd.raw_data(), gc.raw_data(),
                          dx->raw_data());
  }
  if (need_w) {
    *dw = Tensor::empty({n}, xc.dtype(), Device::kCUDA);
    cuda::norm_backward_w(elem(xc), rows, n, xc.raw_data(), rstd.raw_data(), gc.raw_data(),
                          dw->raw_data());
  }
}

}  // namespace

void register_cuda_norm_kernels() {
  KernelTable<NormKernels>::set(Device::kCUDA, {norm, norm_backward});
}

}  // namespace kimi
