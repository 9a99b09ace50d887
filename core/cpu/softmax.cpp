// CPU kernels of the softmax family: max-subtracted exponentials (the numerically stable form of
// PyTorch's aten/src/ATen/native/SoftMax.cpp); cross-entropy = logsumexp(x) - x[target], averaged
// over the rows whose target != ignore_index.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/backend/softmax_kernels.h"

namespace kimi {
namespace {

// A row of n values as an Eigen array, so that exp runs on SIMD lanes (Eigen's vectorised exp;
// std::exp per element was most of these loops).
template <class T>
using RowArray = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
Eigen::Map<const RowArray<T>> row_of(const T* x, int64_t n) {
  return Eigen::Map<const RowArray<T>>(x, n);
}
template <class T>
Eigen::Map<RowArray<T>> row_of(T* x, int64_t n) {
  return Eigen::Map<RowArray<T>>(x, n);
}

// lse[r] = max_j x[r,j] + log sum_j exp(x[r,j] - max): exp in T, the sum in double.
template <class T>
double row_logsumexp(const T* x, int64_t n) {
  if (n == 0) return -std::numeric_limits<double>::infinity();
  const T m = row_of(x, n).maxCoeff();
  if (std::isinf(m) && m < 0) return m;  // all -inf: the row is empty of mass
  const double s = (row_of(x, n) - m).exp().template cast<double>().sum();
  return static_cast<double>(m) + std::log(s);
}

// y = exp(x - lse) (softmax) or x - lse (log_softmax)
template <class T>
void softmax_rows(int64_t rows, int64_t n, const T* x, T* y, bool log) {
#pragma omp parallel for if (rows * n > 32768) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T lse = static_cast<T>(row_logsumexp(x + r * n, n));
    if (log)
      row_of(y + r * n, n) = row_of(x + r * n, n) - lse;
    else
      row_of(y + r * n, n) = (row_of(x + r * n, n) - lse).exp();
  }
}

// softmax:     dx = y * (dy - sum_j dy_j y_j)
// log_softmax: dx = dy - exp(y) * sum_j dy_j
template <class T>
void softmax_rows_backward(int64_t rows, int64_t n, const T* y, const T* dy, T* dx, bool log) {
#pragma omp parallel for if (rows * n > 32768) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * n;
    const T* gr = dy + r * n;
    T* dr = dx + r * n;
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += log ? gr[j] : gr[j] * yr[j];
    for (int64_t j = 0; j < n; ++j)
      dr[j] =
          log ? static_cast<T>(gr[j] - std::exp(yr[j]) * s) : static_cast<T>(yr[j] * (gr[j] - s));
  }
}

// Per-row lse (0 for ignored rows); returns the summed loss lse - x[t].
template <class T>
double cross_entropy_rows(int64_t rows, int64_t c, const T* x, const int64_t* t, int64_t ignore,
                          double* lse) {
  double total = 0;
#pragma omp parallel for if (rows * c > 32768) schedule(static) reduction(+ : total)
  for (int64_t r = 0; r < rows; ++r) {
    if (t[r] == ignore) continue;
    lse[r] = row_logsumexp(x + r * c, c);
    total += lse[r] - static_cast<double>(x[r * c + t[r]]);
  }
  return total;
}

// dx[r,j] = scale * (softmax(x_r)_j - [j == t_r]) for counted rows, 0 for ignored ones
template <class T>
void cross_entropy_rows_backward(int64_t rows, int64_t c, const T* x, const int64_t* t,
                                 int64_t ignore, const double* lse, double scale, T* dx) {
#pragma omp parallel for if (rows * c > 32768) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    T* dr = dx + r * c;
    if (t[r] == ignore) {
      std::fill(dr, dr + c, T(0));
      continue;
    }
    const T s = static_cast<T>(scale);
    row_of(dr, c) = (row_of(x + r * c, c) - static_cast<T>(lse[r])).exp() * s;
    dr[t[r]] -= s;
  }
}

Tensor softmax(const Tensor& x, bool log) {
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "softmax", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    softmax_rows<T>(rows, n, xc.data<T>(), y.data<T>(), log);
  });
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& dy, bool log) {
  const int64_t n = y.size(-1), rows = n ? y.numel() / n : 0;
  Tensor yc = y.detach().contiguous(), gc = dy.detach().to(y.dtype()).contiguous();
  Tensor dx = Tensor::empty(y.shape(), y.dtype());
  dispatch_float(y.dtype(), "softmax", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    softmax_rows_backward<T>(rows, n, yc.data<T>(), gc.data<T>(), dx.data<T>(), log);
  });
  return dx;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     CrossEntropySaved* saved) {
  const int64_t rows = logits.size(0), c = logits.size(1);
  Tensor t = targets.detach().to(DType::kI64).contiguous();
  const int64_t* tp = t.data<int64_t>();
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (tp[r] == ignore_index) continue;
    KIMI_CHECK(tp[r] >= 0 && tp[r] < c, "cross_entropy: target {} at row {} out of range [0, {})",
               tp[r], r, c);
    ++count;
  }
  Tensor xc = logits.detach().contiguous();
  Tensor lse = Tensor::zeros({rows}, DType::kF64);
  double total = 0;
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    total = cross_entropy_rows<T>(rows, c, xc.data<T>(), tp, ignore_index, lse.data<double>());
  });
  const double inv = count ? 1.0 / static_cast<double>(count) : 0.0;
  *saved = {xc, t, lse, Tensor::scalar(inv, DType::kF64), ignore_index};
  return Tensor::scalar(total * inv, logits.dtype());
}

Tensor cross_entropy_backward(const CrossEntropySaved& s, const Tensor& g) {
  const Tensor& x = s.logits;
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  const double scale = g.item() * s.inv_count.item();
  dispatch_float(x.dtype(), "cross_entropy", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    cross_entropy_rows_backward<T>(x.size(0), x.size(1), x.data<T>(), s.targets.data<int64_t>(),
                                   s.ignore_index, s.lse.data<double>(), scale, dx.data<T>());
  });
  return dx;
}

}  // namespace

void register_cpu_softmax_kernels() {
  KernelTable<SoftmaxKernels>::set(
      Device::kCPU, {softmax, softmax_backward, cross_entropy, cross_entropy_backward});
}

}  // namespace kimi
