// Norms over the last dim, fused forward and analytic backward: rms_norm (Zhang & Sennrich
// 2019, as HF LlamaRMSNorm / FLA's RMSNorm: x * rsqrt(mean(x^2) + eps) * w) and l2_norm
// (FLA's l2norm: x * rsqrt(sum(x^2) + eps)). Both save one inverse norm per row.
#include <algorithm>
#include <vector>

#include "core/backend/norm_kernels.h"
#include "core/ops/ops.h"

namespace kimi {
namespace {

// Shared by rms_norm (div = n) and l2_norm (div = 1, no weight).
Tensor norm_impl(const Tensor& x, const Tensor& weight, double eps, bool mean, const char* name) {
  KIMI_CHECK(x.dim() >= 1, "{}: needs at least 1 dim, got {}", name, x.str());
  const int64_t n = x.size(-1);
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
  const auto& k = kernels<NormKernels>(x, name);
  Tensor rstd;
  Tensor y = k.norm(xc, wc, div, eps, &rstd, name);
  // With xhat = x r and gw = dy * w (dr/dx_j = -r^3 x_j / div):
  //   dx = r * (gw - xhat * sum_j(gw_j xhat_j) / div);  dw_j = sum_rows dy_j * xhat_j
  return record(name, y, inputs, [=, &k](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor dx, dw;
    k.norm_backward(xc, wc, rstd, g[0], div, need_x, need_w, &dx, &dw, name);
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
