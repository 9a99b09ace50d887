// CPU optimizer updates (the oracle of the fused GPU steps): in double, stored in the
// parameter's dtype.
#include <cmath>

#include "core/backend/optim_kernels.h"

namespace kimi {
namespace {

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                const AdamWHyper& h) {
  dispatch_float(p.dtype(), "AdamW", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    const int64_t n = p.numel();
    T *pp = p.data<T>(), *mp = m.data<T>(), *vp = v.data<T>();
    const T* gp = g.data<T>();
#pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const double gi = gp[i];
      const double mi = h.beta1 * mp[i] + (1 - h.beta1) * gi;
      const double vi = h.beta2 * vp[i] + (1 - h.beta2) * gi * gi;
      mp[i] = static_cast<T>(mi);
      vp[i] = static_cast<T>(vi);
      const double update =
          (mi / h.bias_correction1) / (std::sqrt(vi / h.bias_correction2) + h.eps) +
          h.weight_decay * pp[i];
      pp[i] = static_cast<T>(pp[i] - h.lr * update);
    }
  });
}

void sgd_step(const Tensor& p, const Tensor& g, const Tensor& buf, double lr, double momentum,
              double weight_decay) {
  dispatch_float(p.dtype(), "SGD", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    T *pp = p.data<T>(), *b = buf.data<T>();
    const T* gp = g.data<T>();
    for (int64_t j = 0; j < p.numel(); ++j) {
      b[j] = static_cast<T>(momentum * b[j] + gp[j] + weight_decay * pp[j]);
      pp[j] = static_cast<T>(pp[j] - lr * b[j]);
    }
  });
}

double sum_of_squares(const std::vector<Tensor>& xs) {
  double total = 0;
  for (const Tensor& x : xs)
    for (double e : x.to_vector<double>()) total += e * e;
  return total;
}

}  // namespace

void register_cpu_optim_kernels() {
  KernelTable<OptimKernels>::set(Device::kCPU, {adamw_step, sgd_step, sum_of_squares});
}

}  // namespace kimi
