// Accuracy over labelled positions (token level) and exact match per sequence, the metrics of
// the tech report's Figure 4 and zoology's MQAR evaluation.
#pragma once

#include "tasks/task.h"

namespace kimi::tasks {

struct Accuracy {
  int64_t correct = 0, total = 0;     // labelled positions
  int64_t seq_correct = 0, seqs = 0;  // rows with at least one label
  double token_acc() const { return total ? static_cast<double>(correct) / total : 0.0; }
  double exact_match() const { return seqs ? static_cast<double>(seq_correct) / seqs : 0.0; }
};

// predictions: argmax token ids [batch, seq_len]. A row counts as exact when every labelled
// position is right; rows without labels are left out of exact match.
void accumulate_accuracy(const Batch& batch, const int32_t* predictions, Accuracy* acc);

}  // namespace kimi::tasks
