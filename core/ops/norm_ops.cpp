// Norms over the last dim, fused forward and analytic backward: rms_norm (Zhang & Sennrich
// 2019, as HF LlamaRMSNorm / FLA's RMSNorm: x * rsqrt(mean(x^2) + eps) * w) and l2_norm
// (FLA's l2norm: x * rsqrt(sum(x^2) + eps)). Both save one inverse norm per row.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/ops/ops.h"
#ifdef KIMI_LAB_CUDA
#include "core/cuda/norm/norm_cuda.h"
#endif

namespace kimi {
namespace {

// --- raw-pointer CPU kernels: `rows` contiguous rows of length n --------------------------

// r = rsqrt(sum(x^2) / div + eps);  y = x * r * w  (w null = ones). div = n for rms, 1 for l2.
template <class T>
void norm_fwd(int64_t rows, int64_t n, double div, double eps, const T* x, const T* w, T* y,
              double* rstd) {
#pragma omp parallel for if (rows * n > 32768) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    double ss = 0;
    for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const double inv = 1.0 / std::sqrt(ss / div + eps);
    rstd[r] = inv;
    for (int64_t j = 0; j < n; ++j)
      yr[j] = static_cast<T>(xr[j] * inv * (w ? static_cast<double>(w[j]) : 1.0));
  }
}

// With xhat = x r and gw = dy * w:
//   dx = r * (gw - xhat * sum_j(gw_j xhat_j) / div)
// (from dr/dx_j = -r^3 x_j / div).
template <class T>
void norm_bwd_x(int64_t rows, int64_t n, double div, const T* x, const T* w, const double* rstd,
                const T* dy, T* dx) {
#pragma omp parallel for if (rows * n > 32768) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    const T* gr = dy + r * n;
    T* dr = dx + r * n;
    const double inv = rstd[r];
    double dot = 0;
    for (int64_t j = 0; j < n; ++j)
      dot += static_cast<double>(gr[j]) * (w ? static_cast<double>(w[j]) : 1.0) * xr[j] * inv;
    const double c = dot / div;
    for (int64_t j = 0; j < n; ++j) {
      const double gw = static_cast<double>(gr[j]) * (w ? static_cast<double>(w[j]) : 1.0);
      dr[j] = static_cast<T>(inv * (gw - xr[j] * inv * c));
    }
  }
}

// dw_j = sum_rows dy[r,j] * x[r,j] * r_r  (parallel over columns: no write races)
template <class T>
void norm_bwd_w(int64_t rows, int64_t n, const T* x, const double* rstd, const T* dy, T* dw) {
#pragma omp parallel for if (rows * n > 32768) schedule(static)
  for (int64_t j = 0; j < n; ++j) {
    double acc = 0;
    for (int64_t r = 0; r < rows; ++r)
      acc += static_cast<double>(dy[r * n + j]) * x[r * n + j] * rstd[r];
    dw[j] = static_cast<T>(acc);
  }
}

// Shared by rms_norm (div = n) and l2_norm (div = 1, no weight).
Tensor norm_impl(const Tensor& x, const Tensor& weight, double eps, bool mean, const char* name) {
  KIMI_CHECK(x.dim() >= 1, "{}: needs at least 1 dim, got {}", name, x.str());
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  const double div = mean ? static_cast<double>(std::max<int64_t>(n, 1)) : 1.0;
  Tensor xc = x.detach().contiguous(), wc;
  if (weight.defined()) {
    KIMI_CHECK(weight.dim() == 1 && weight.size(0) == n, "{}: weight {} for input {}", name,
               weight.str(), x.str());
    KIMI_CHECK(weight.dtype() == x.dtype(), "{}: weight {} for input {}", name,
               dtype_name(weight.dtype()), dtype_name(x.dtype()));
    check_same_device(x, weight, name);
    wc = weight.detach().contiguous();
  }
  std::vector<Tensor> inputs = {x};
  if (weight.defined()) inputs.push_back(weight);
  const bool need_x = x.requires_grad(), need_w = weight.defined() && weight.requires_grad();
#ifdef KIMI_LAB_CUDA
  if (x.device() == Device::kCUDA) {
    CudaNorm f = cuda_norm(xc, wc, div, eps);
    Tensor rstd = f.rstd;
    return record(name, f.y, inputs, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor dx, dw;
      cuda_norm_backward(xc, wc, rstd, g[0], div, need_x, need_w, &dx, &dw);
      std::vector<Tensor> grads = {dx};
      if (wc.defined()) grads.push_back(dw);
      return grads;
    });
  }
#endif
  check_cpu(x, name);
  auto rstd = std::make_shared<std::vector<double>>(rows);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), name, [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* wp = wc.defined() ? wc.data<scalar_t>() : nullptr;
    norm_fwd<scalar_t>(rows, n, div, eps, xc.data<scalar_t>(), wp, y.data<scalar_t>(),
                       rstd->data());
  });
  return record(name, y, inputs, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gc = g[0].contiguous(), dx, dw;
    dispatch_float(xc.dtype(), name, [&](auto tag_) {
      using scalar_t = KIMI_SCALAR_T(tag_);
      const scalar_t* wp = wc.defined() ? wc.data<scalar_t>() : nullptr;
      if (need_x) {
        dx = Tensor::empty(xc.shape(), xc.dtype());
        norm_bwd_x<scalar_t>(rows, n, div, xc.data<scalar_t>(), wp, rstd->data(),
                             gc.data<scalar_t>(), dx.data<scalar_t>());
      }
      if (need_w) {
        dw = Tensor::empty({n}, xc.dtype());
        norm_bwd_w<scalar_t>(rows, n, xc.data<scalar_t>(), rstd->data(), gc.data<scalar_t>(),
                             dw.data<scalar_t>());
      }
    });
    std::vector<Tensor> grads = {dx};
    if (wc.defined()) grads.push_back(dw);
    return grads;
  });
}

}  // namespace

// y = x * rsqrt(mean(x^2) + eps) * w
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  return norm_impl(x, weight, eps, /*mean=*/true, "rms_norm");
}

// y = x * rsqrt(sum(x^2) + eps)
Tensor l2_norm(const Tensor& x, double eps) {
  return norm_impl(x, Tensor(), eps, /*mean=*/false, "l2_norm");
}

}  // namespace kimi
