// CPU kernels of the norms (core/backend/norm_kernels.h) over `rows` contiguous rows of length
// n, in double: r = rsqrt(sum(x^2) / div + eps), y = x * r * w.
#include <cmath>

#include "core/backend/norm_kernels.h"

namespace kimi {
namespace {

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

// r is kept in F64 whatever x's dtype: the CPU computes the norm in double.
Tensor norm(const Tensor& x, const Tensor& w, double div, double eps, Tensor* rstd,
            const char* name) {
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  *rstd = Tensor::empty({rows}, DType::kF64);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), name, [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* wp = w.defined() ? w.data<scalar_t>() : nullptr;
    norm_fwd<scalar_t>(rows, n, div, eps, x.data<scalar_t>(), wp, y.data<scalar_t>(),
                       rstd->data<double>());
  });
  return y;
}

void norm_backward(const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dy,
                   double div, bool need_x, bool need_w, Tensor* dx, Tensor* dw, const char* name) {
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  Tensor gc = dy.detach().contiguous();
  dispatch_float(x.dtype(), name, [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* wp = w.defined() ? w.data<scalar_t>() : nullptr;
    if (need_x) {
      *dx = Tensor::empty(x.shape(), x.dtype());
      norm_bwd_x<scalar_t>(rows, n, div, x.data<scalar_t>(), wp, rstd.data<double>(),
                           gc.data<scalar_t>(), dx->data<scalar_t>());
    }
    if (need_w) {
      *dw = Tensor::empty({n}, x.dtype());
      norm_bwd_w<scalar_t>(rows, n, x.data<scalar_t>(), rstd.data<double>(), gc.data<scalar_t>(),
                           dw->data<scalar_t>());
    }
  });
}

}  // namespace

void register_cpu_norm_kernels() {
  KernelTable<NormKernels>::set(Device::kCPU, {norm, norm_backward});
}

}  // namespace kimi
