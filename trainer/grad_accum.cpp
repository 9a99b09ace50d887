// Gradient accumulation over row slices (trainer/grad_accum.h).
#include "trainer/grad_accum.h"

#include <algorithm>

#include "core/tensor/error.h"

namespace kimi {

double forward_backward_accumulated(models::LanguageModel& model, const tasks::Batch& batch,
                                    int64_t micro_batches, Device device,
                                    const LeafGradReady& on_leaf_ready) {
  KIMI_CHECK(micro_batches >= 1 && batch.batch % micro_batches == 0,
             "{} rows do not split into {} micro-batches", batch.batch, micro_batches);
  const int64_t rows = batch.batch / micro_batches, T = batch.seq_len;
  const auto labelled = [](auto begin, auto end) {
    return std::count_if(begin, end, [](int32_t l) { return l != tasks::kIgnoreLabel; });
  };
  const int64_t total = labelled(batch.labels.begin(), batch.labels.end());
  double loss_sum = 0;  // sum over slices of mean_i * n_i / n = the batch mean
  int64_t last = -1;    // the last slice with labels: its backward completes the gradients
  for (int64_t m = 0; m < micro_batches; ++m) {
    const auto lab_begin = batch.labels.begin() + m * rows * T;
    if (labelled(lab_begin, lab_begin + rows * T) > 0) last = m;
  }
  for (int64_t m = 0; m < micro_batches; ++m) {
    const auto in_begin = batch.inputs.begin() + m * rows * T;
    const auto lab_begin = batch.labels.begin() + m * rows * T;
    const int64_t n = labelled(lab_begin, lab_begin + rows * T);
    if (n == 0) continue;  // no labels: contributes neither loss nor gradient
    Tensor ids = Tensor::from_vector(std::vector<int32_t>(in_begin, in_begin + rows * T), {rows, T})
                     .to(device);
    Tensor labels =
        Tensor::from_vector(std::vector<int32_t>(lab_begin, lab_begin + rows * T), {rows, T})
            .to(device);
    Tensor loss = models::lm_loss(model.forward(ids), labels);
    const double weight = static_cast<double>(n) / static_cast<double>(total);
    loss_sum += loss.item() * weight;
    const Tensor root = micro_batches == 1 ? loss : mul_scalar(loss, weight);
    run_backward({root}, {Tensor::ones(root.shape(), root.dtype(), root.device())},
                 m == last ? on_leaf_ready : nullptr);
  }
  return loss_sum;
}

}  // namespace kimi
