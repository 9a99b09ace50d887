// Evaluation of a model on fixed token sets: loss, token accuracy and exact match per slice.
#pragma once

#include <string>
#include <vector>

#include "models/language_model.h"
#include "tasks/eval_set.h"

namespace kimi {

struct SliceResult {
  std::string task;
  int64_t seq_len = 0, num_kv_pairs = 0, num_examples = 0;
  double loss = 0, accuracy = 0, exact_match = 0;
};

// Runs the model without gradients over the set in batches of batch_size.
SliceResult evaluate_slice(models::LanguageModel& model, const tasks::EvalSet& set,
                           int64_t batch_size, Device device);

}  // namespace kimi
