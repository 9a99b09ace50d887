// Fixed evaluation sets and the filter that keeps training rows out of them (zoology checks
// train/test leakage after the fact; here a training row that matches an eval row is redrawn).
#pragma once

#include <unordered_set>

#include "tasks/task.h"

namespace kimi::tasks {

struct EvalSet {
  std::string task;
  int64_t seq_len = 0;
  int64_t num_kv_pairs = 0;  // eval.csv slice column; 0 for non-MQAR tasks
  Batch data;
};

// num_examples rows at seq_len drawn with Split::kEval; deterministic in (seed, seq_len).
EvalSet make_eval_set(const Task& task, int64_t seq_len, int64_t num_examples, uint64_t seed);

// One eval set per eval.seq_lens entry (load_config fills an empty list with train.seq_len).
std::vector<EvalSet> make_eval_sets(const Task& task, const EvalConfig& eval);

// An eval set from token ids made elsewhere (`kimi-lab eval --data`), checked before any work:
// rows > 0 and seq_len > 0, inputs.size() == labels.size() == rows * seq_len, every input id in
// [0, vocab) and every label in [0, vocab) or kIgnoreLabel (ids are checked as int64, so 2^32+5
// is refused rather than truncated to 5), and at least one scored label (no accuracy of an empty
// set). UserError "WHERE: slice 'NAME': problem" otherwise.
EvalSet eval_set_from_ids(const std::string& name, int64_t rows, int64_t seq_len,
                          const std::vector<int64_t>& inputs, const std::vector<int64_t>& labels,
                          int64_t vocab, const std::string& where);

// Hashes of whole input rows (length included). A hash collision can only make training skip
// a row it did not have to: never lets an eval row through.
class SequenceFilter {
 public:
  void add(const Batch& batch);
  void add(const std::vector<EvalSet>& sets);
  bool contains(const int32_t* row, int64_t seq_len) const;
  size_t size() const { return hashes_.size(); }

 private:
  std::unordered_set<uint64_t> hashes_;
};

uint64_t hash_row(const int32_t* row, int64_t seq_len);

// Task::sample with rows found in the filter redrawn (row_seed(seed, r, 1), (.., 2), ...):
// deterministic in (seed, filter contents). Throws UserError when a row keeps landing in the
// filter (a task with too few distinct sequences). rejected (optional) counts redraws.
Batch sample_filtered(const Task& task, int64_t batch, int64_t seq_len, uint64_t seed,
                      const SequenceFilter& filter, int64_t* rejected = nullptr);

}  // namespace kimi::tasks
