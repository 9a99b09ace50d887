// Matrix products: matmul (batched) and linear (PyTorch layout, w [out, in]). The op context
// (the compute precision) is taken once at forward time and serves the backward too, whenever
// that runs.
#include "core/backend/product_kernels.h"
#include "core/ops/ops.h"

namespace kimi {

// C = A B;  dA = dC B^T, dB = A^T dC (summed over the batch when B is a shared 2-d matrix)
Tensor matmul(const Tensor& a, const Tensor& b) {
  check_same_device(a, b, "matmul");
  KIMI_CHECK(a.dtype() == b.dtype(), "matmul: dtypes {} and {}", dtype_name(a.dtype()),
             dtype_name(b.dtype()));
  KIMI_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: {} @ {}", shape_str(a.shape()),
             shape_str(b.shape()));
  const int64_t K = a.size(-1);
  KIMI_CHECK(b.size(-2) == K, "matmul: inner dims differ, {} @ {}", shape_str(a.shape()),
             shape_str(b.shape()));
  if (b.dim() != 2) {
    KIMI_CHECK(Shape(a.shape().begin(), a.shape().end() - 2) ==
                   Shape(b.shape().begin(), b.shape().end() - 2),
               "matmul: batch dims differ, {} @ {}", shape_str(a.shape()), shape_str(b.shape()));
  }
  const OpContext ctx = OpContext::current();
  const auto& k = kernels<ProductKernels>(a, "matmul");
  Tensor out = k.matmul(ctx, a, b);
  return record("matmul", out, {a, b},
                [=, &k](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  Tensor da, db;
                  k.matmul_backward(ctx, a.detach(), b.detach(), g[0], a.requires_grad(),
                                    b.requires_grad(), &da, &db);
                  return {da, db};
                });
}

// y = x W^T + b;  dx = dy W, dW = dy^T x, db = sum_rows dy
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  KIMI_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1),
             "linear: input {} with weight {}", shape_str(x.shape()), shape_str(w.shape()));
  KIMI_CHECK(x.dtype() == w.dtype(), "linear: input {} with weight {}", dtype_name(x.dtype()),
             dtype_name(w.dtype()));
  const OpContext ctx = OpContext::current();
  const auto& k = kernels<ProductKernels>(x, "linear");
  Tensor y = k.linear(ctx, x, w, bias);
  const bool has_bias = bias.defined();
  std::vector<Tensor> inputs = {x, w};
  if (has_bias) inputs.push_back(bias);
  return record("linear", y, inputs, [=, &k](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor dx, dw, db;
    const bool need_bias = has_bias && bias.requires_grad();
    k.linear_backward(ctx, x.detach(), w.detach(), g[0], x.requires_grad(), w.requires_grad(),
                      need_bias, &dx, &dw, &db);
    std::vector<Tensor> grads = {dx, dw};
    if (has_bias) grads.push_back(need_bias ? db.reshape(bias.shape()) : Tensor());
    return grads;
  });
}

}  // namespace kimi
