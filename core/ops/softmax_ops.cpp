// Softmax family over the last dim: softmax, log_softmax and a fused cross-entropy.
// Math: max-subtracted exponentials (the numerically stable form of PyTorch's
// aten/src/ATen/native/SoftMax.cpp); cross-entropy = logsumexp(x) - x[target], averaged over
// the rows whose target != ignore_index (torch.nn.functional.cross_entropy, reduction='mean').
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core/ops.h"
#ifdef KIMI_LAB_CUDA
#include "core/ops/cuda/softmax_cuda.h"
#endif

namespace kimi {
namespace {

// --- raw-pointer CPU kernels: `rows` contiguous rows of length n --------------------------

// lse[r] = max_j x[r,j] + log sum_j exp(x[r,j] - max)
template <class T>
double row_logsumexp(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  if (std::isinf(m) && m < 0) return m;  // all -inf: the row is empty of mass
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(x[j] - m);  // exp in T, sum in double
  return static_cast<double>(m) + std::log(s);
}

// y = exp(x - lse) (softmax) or x - lse (log_softmax)
template <class T>
void softmax_fwd(int64_t rows, int64_t n, const T* x, T* y, bool log) {
#pragma omp parallel for if (rows * n > 32768) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const double lse = row_logsumexp(xr, n);
    for (int64_t j = 0; j < n; ++j) {
      const T z = static_cast<T>(static_cast<double>(xr[j]) - lse);
      yr[j] = log ? z : std::exp(z);
    }
  }
}

// softmax:     dx = y * (dy - sum_j dy_j y_j)
// log_softmax: dx = dy - exp(y) * sum_j dy_j
template <class T>
void softmax_bwd(int64_t rows, int64_t n, const T* y, const T* dy, T* dx, bool log) {
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

Tensor softmax_impl(const Tensor& x, bool log, const char* name) {
  KIMI_CHECK(x.dim() >= 1, "{}: needs at least 1 dim, got {}", name, x.str());
#ifdef KIMI_LAB_CUDA
  if (x.device() == Device::kCUDA) {
    Tensor y = cuda_softmax(x, log);
    Tensor y_saved = y;
    return record(name, y, {x}, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {cuda_softmax_backward(y_saved, g[0], log)};
    });
  }
#endif
  check_cpu(x, name);
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), name, [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    softmax_fwd<scalar_t>(rows, n, xc.data<scalar_t>(), y.data<scalar_t>(), log);
  });
  Tensor y_saved = y;  // saved before record() gives y its node (no cycle through the node)
  return record(name, y, {x}, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gc = g[0].contiguous();
    Tensor dx = Tensor::empty(y_saved.shape(), y_saved.dtype());
    dispatch_float(y_saved.dtype(), name, [&](auto tag_) {
      using scalar_t = KIMI_SCALAR_T(tag_);
      softmax_bwd<scalar_t>(rows, n, y_saved.data<scalar_t>(), gc.data<scalar_t>(),
                            dx.data<scalar_t>(), log);
    });
    return {dx};
  });
}

// Targets as int64, whatever their integer dtype.
std::vector<int64_t> targets_as_i64(const Tensor& targets) {
  KIMI_CHECK(targets.dtype() == DType::kI32 || targets.dtype() == DType::kI64,
             "cross_entropy: targets must be I32 or I64, got {}", dtype_name(targets.dtype()));
  return targets.to_vector<int64_t>();
}

// Per-row loss lse - x[t] (0 for ignored rows); returns the summed loss, fills lse.
template <class T>
double cross_entropy_fwd(int64_t rows, int64_t c, const T* x, const int64_t* t, int64_t ignore,
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

// dx[r,j] = g * (softmax(x_r)_j - [j == t_r]) / count for counted rows, 0 for ignored ones
template <class T>
void cross_entropy_bwd(int64_t rows, int64_t c, const T* x, const int64_t* t, int64_t ignore,
                       const double* lse, double scale, T* dx) {
#pragma omp parallel for if (rows * c > 32768) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    T* dr = dx + r * c;
    if (t[r] == ignore) {
      std::fill(dr, dr + c, T(0));
      continue;
    }
    const T* xr = x + r * c;
    for (int64_t j = 0; j < c; ++j)
      dr[j] = static_cast<T>(scale *
                             (std::exp(static_cast<T>(xr[j] - lse[r])) - (j == t[r] ? 1.0 : 0.0)));
  }
}

}  // namespace

Tensor softmax(const Tensor& x) { return softmax_impl(x, /*log=*/false, "softmax"); }
Tensor log_softmax(const Tensor& x) { return softmax_impl(x, /*log=*/true, "log_softmax"); }

// loss = (1/count) sum_{r counted} (logsumexp(x_r) - x_r[t_r]);  dx = g (softmax - onehot)/count
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  KIMI_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got {}", logits.str());
  const int64_t rows = logits.size(0), c = logits.size(1);
  KIMI_CHECK(targets.dim() == 1 && targets.size(0) == rows,
             "cross_entropy: targets {} for logits {}", targets.str(), logits.str());
#ifdef KIMI_LAB_CUDA
  // On the GPU the count and the range check stay on the device (an out-of-range target gives
  // a NaN loss instead of an error): no host sync per step.
  if (logits.device() == Device::kCUDA) {
    auto ce = std::make_shared<CudaCrossEntropy>(cuda_cross_entropy(logits, targets, ignore_index));
    Tensor loss = ce->loss;
    ce->loss = Tensor();  // the closure keeps only what the backward reads
    return record("cross_entropy", loss, {logits},
                  [ce](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                    return {cuda_cross_entropy_backward(*ce, g[0])};
                  });
  }
#endif
  check_cpu(logits, "cross_entropy");
  auto t = std::make_shared<std::vector<int64_t>>(targets_as_i64(targets));
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t v = (*t)[r];
    if (v == ignore_index) continue;
    KIMI_CHECK(v >= 0 && v < c, "cross_entropy: target {} at row {} out of range [0, {})", v, r, c);
    ++count;
  }
  Tensor xc = logits.detach().contiguous();
  auto lse = std::make_shared<std::vector<double>>(rows, 0.0);
  double total = 0;
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    total = cross_entropy_fwd<scalar_t>(rows, c, xc.data<scalar_t>(), t->data(), ignore_index,
                                        lse->data());
  });
  const double inv = count ? 1.0 / static_cast<double>(count) : 0.0;
  Tensor loss = Tensor::scalar(total * inv, logits.dtype());
  return record(
      "cross_entropy", loss, {logits}, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        Tensor dx = Tensor::empty(xc.shape(), xc.dtype());
        const double scale = g[0].item() * inv;
        dispatch_float(xc.dtype(), "cross_entropy", [&](auto tag_) {
          using scalar_t = KIMI_SCALAR_T(tag_);
          cross_entropy_bwd<scalar_t>(rows, c, xc.data<scalar_t>(), t->data(), ignore_index,
                                      lse->data(), scale, dx.data<scalar_t>());
        });
        return {dx};
      });
}

}  // namespace kimi
