// Softmax family over the last dim: softmax, log_softmax and a fused cross-entropy (the mean of
// logsumexp(x) - x[target] over the rows whose target != ignore_index, as
// torch.nn.functional.cross_entropy with reduction='mean').
#include <memory>

#include "core/backend/softmax_kernels.h"
#include "core/ops/ops.h"

namespace kimi {
namespace {

// softmax:     dx = y * (dy - sum_j dy_j y_j)
// log_softmax: dx = dy - exp(y) * sum_j dy_j
Tensor softmax_impl(const Tensor& x, bool log, const char* name) {
  KIMI_CHECK(x.dim() >= 1, "{}: needs at least 1 dim, got {}", name, x.str());
  KIMI_CHECK(is_floating(x.dtype()), "{}: float input, got {}", name, dtype_name(x.dtype()));
  const auto& k = kernels<SoftmaxKernels>(x, name);
  Tensor y = k.softmax(x, log);
  Tensor y_saved = y;  // saved before record() gives y its node (no cycle through the node)
  return record(name, y, {x},
                [&k, y_saved, log](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  return {k.softmax_backward(y_saved, g[0], log)};
                });
}

}  // namespace

Tensor softmax(const Tensor& x) { return softmax_impl(x, /*log=*/false, "softmax"); }
Tensor log_softmax(const Tensor& x) { return softmax_impl(x, /*log=*/true, "log_softmax"); }

// loss = (1/count) sum_{r counted} (logsumexp(x_r) - x_r[t_r]);  dx = g (softmax - onehot)/count.
// On the GPU the count and the range check stay on the device (an out-of-range target gives a
// NaN loss instead of an error): no host sync per step.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  KIMI_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got {}", logits.str());
  KIMI_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0),
             "cross_entropy: targets {} for logits {}", targets.str(), logits.str());
  KIMI_CHECK(targets.dtype() == DType::kI32 || targets.dtype() == DType::kI64,
             "cross_entropy: targets must be I32 or I64, got {}", dtype_name(targets.dtype()));
  KIMI_CHECK(is_floating(logits.dtype()), "cross_entropy: float logits, got {}",
             dtype_name(logits.dtype()));
  check_same_device(logits, targets, "cross_entropy");
  const auto& k = kernels<SoftmaxKernels>(logits, "cross_entropy");
  auto saved = std::make_shared<CrossEntropySaved>();
  Tensor loss = k.cross_entropy(logits, targets, ignore_index, saved.get());
  return record("cross_entropy", loss, {logits},
                [&k, saved](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  return {k.cross_entropy_backward(*saved, g[0])};
                });
}

}  // namespace kimi
