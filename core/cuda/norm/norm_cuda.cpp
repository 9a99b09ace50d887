// Tensor glue of the CUDA norm kernels.
#ifdef KIMI_LAB_CUDA
#include "core/cuda/norm/norm_cuda.h"

#include "core/cuda/norm/norm.h"
#include "core/cuda/elementwise/elementwise_cuda.h"

namespace kimi {

static cuda::ElemType elem(const Tensor& t) { return static_cast<cuda::ElemType>(t.dtype()); }

CudaNorm cuda_norm(const Tensor& xc, const Tensor& wc, double div, double eps) {
  check_cuda_float(xc, "norm");
  const int64_t n = xc.size(-1), rows = n ? xc.numel() / n : 0;
  CudaNorm r;
  r.y = Tensor::empty(xc.shape(), xc.dtype(), Device::kCUDA);
  r.rstd = Tensor::empty({rows}, xc.dtype() == DType::kF64 ? DType::kF64 : DType::kF32,
                         Device::kCUDA);
  cuda::norm_forward(elem(xc), rows, n, div, eps, xc.raw_data(),
                     wc.defined() ? wc.raw_data() : nullptr, r.y.raw_data(), r.rstd.raw_data());
  return r;
}

void cuda_norm_backward(const Tensor& xc, const Tensor& wc, const Tensor& rstd, const Tensor& dy,
                        double div, bool need_x, bool need_w, Tensor* dx, Tensor* dw) {
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

}  // namespace kimi
#endif  // KIMI_LAB_CUDA
