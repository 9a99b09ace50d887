// Batched, gradient-free evaluation (loss summed over labelled positions, argmax accuracy).
#include "trainer/evaluate.h"

#include <algorithm>

#include "core/tensor/error.h"
#include "tasks/metrics.h"

namespace kimi {

SliceResult evaluate_slice(models::LanguageModel& model, const tasks::EvalSet& set,
                           int64_t batch_size, Device device) {
  NoGradGuard no_grad;
  const tasks::Batch& data = set.data;
  const int64_t N = data.batch, T = data.seq_len;
  KIMI_CHECK(batch_size > 0, "evaluate_slice: batch_size {} (callers check their flag or key)",
             batch_size);
  // An empty slice would print accuracy 0, a result nobody measured.
  if (N <= 0 || T <= 0)
    throw UserError(fmt::format("eval slice '{}' (T={}): no rows or positions ([{}, {}])", set.task,
                                set.seq_len, N, T));
  tasks::Accuracy acc;
  double loss_sum = 0;
  int64_t counted = 0;
  for (int64_t start = 0; start < N; start += batch_size) {
    const int64_t b = std::min(batch_size, N - start);
    tasks::Batch part;
    part.batch = b;
    part.seq_len = T;
    part.inputs.assign(data.inputs.begin() + start * T, data.inputs.begin() + (start + b) * T);
    part.labels.assign(data.labels.begin() + start * T, data.labels.begin() + (start + b) * T);
    Tensor ids = Tensor::from_vector(part.inputs, {b, T}).to(device);
    Tensor labels = Tensor::from_vector(part.labels, {b, T}).to(device);
    Tensor logits = model.forward(ids);
    int64_t n_labels = std::count_if(part.labels.begin(), part.labels.end(),
                                     [](int32_t l) { return l != tasks::kIgnoreLabel; });
    loss_sum += models::lm_loss(logits, labels).item() * static_cast<double>(n_labels);
    counted += n_labels;
    // The argmax runs where the logits are: only B x T int32 predictions cross to the host.
    std::vector<int32_t> pred = argmax_lastdim(logits).to(Device::kCPU).to_vector<int32_t>();
    tasks::accumulate_accuracy(part, pred.data(), &acc);
  }
  if (counted == 0)
    throw UserError(
        fmt::format("eval slice '{}' (T={}): no scored labels (all {}); accuracy is undefined",
                    set.task, set.seq_len, tasks::kIgnoreLabel));
  SliceResult r;
  r.task = set.task;
  r.seq_len = set.seq_len;
  r.num_kv_pairs = set.num_kv_pairs;
  r.num_examples = N;
  r.loss = counted ? loss_sum / static_cast<double>(counted) : 0.0;
  r.accuracy = acc.token_acc();
  r.exact_match = acc.exact_match();
  return r;
}

}  // namespace kimi
