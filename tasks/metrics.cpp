// Token accuracy and exact match (tasks/metrics.h).
#include "tasks/metrics.h"

namespace kimi::tasks {

void accumulate_accuracy(const Batch& batch, const int32_t* predictions, Accuracy* acc) {
  for (int64_t r = 0; r < batch.batch; ++r) {
    const int64_t base = r * batch.seq_len;
    int64_t labelled = 0, right = 0;
    for (int64_t t = 0; t < batch.seq_len; ++t) {
      const int32_t label = batch.labels[base + t];
      if (label == kIgnoreLabel) continue;
      ++labelled;
      right += predictions[base + t] == label;
    }
    acc->correct += right;
    acc->total += labelled;
    if (labelled > 0) {
      ++acc->seqs;
      acc->seq_correct += right == labelled;
    }
  }
}

}  // namespace kimi::tasks
