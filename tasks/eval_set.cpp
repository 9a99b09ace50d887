// Eval sets and the train/eval filter (tasks/eval_set.h).
#include "tasks/eval_set.h"

#include "core/tensor/error.h"
#include "tasks/rng.h"

namespace kimi::tasks {

EvalSet make_eval_set(const Task& task, int64_t seq_len, int64_t num_examples, uint64_t seed) {
  task.check_seq_len(seq_len);
  EvalSet set;
  set.task = task.name();
  set.seq_len = seq_len;
  set.num_kv_pairs = task.num_kv_pairs(seq_len);
  set.data = empty_batch(num_examples, seq_len);
  // Each length gets its own stream, so adding an eval length leaves the others unchanged.
  const uint64_t length_seed = mix_seed(seed, static_cast<uint64_t>(seq_len));
  for (int64_t r = 0; r < num_examples; ++r) {
    task.sample_row(row_seed(length_seed, r, 0), seq_len, Split::kEval,
                    set.data.inputs.data() + r * seq_len, set.data.labels.data() + r * seq_len);
  }
  return set;
}

std::vector<EvalSet> make_eval_sets(const Task& task, const EvalConfig& eval) {
  std::vector<EvalSet> sets;
  for (int64_t len : eval.seq_lens) {
    sets.push_back(make_eval_set(task, len, eval.num_examples, static_cast<uint64_t>(eval.seed)));
  }
  return sets;
}

EvalSet eval_set_from_ids(const std::string& name, int64_t rows, int64_t seq_len,
                          const std::vector<int64_t>& inputs, const std::vector<int64_t>& labels,
                          int64_t vocab, const std::string& where) {
  const auto fail = [&](const std::string& problem) {
    throw UserError(fmt::format("{}: slice '{}': {}", where, name, problem));
  };
  if (rows <= 0) fail(fmt::format("no rows (N = {}); nothing to evaluate", rows));
  if (seq_len <= 0) fail(fmt::format("no positions (T = {}); nothing to evaluate", seq_len));
  const int64_t n = rows * seq_len;
  if (static_cast<int64_t>(inputs.size()) != n || static_cast<int64_t>(labels.size()) != n)
    fail(fmt::format("{} inputs and {} labels for [{}, {}]", inputs.size(), labels.size(), rows,
                     seq_len));
  int64_t scored = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (inputs[i] < 0 || inputs[i] >= vocab)
      fail(
          fmt::format("token id {} at row {}, position {} of '{}.inputs' is outside the model's "
                      "vocabulary [0, {})",
                      inputs[i], i / seq_len, i % seq_len, name, vocab));
    if (labels[i] == kIgnoreLabel) continue;
    if (labels[i] < 0 || labels[i] >= vocab)
      fail(
          fmt::format("label {} at row {}, position {} of '{}.labels' is outside the model's "
                      "vocabulary [0, {}) (and is not the ignore label {})",
                      labels[i], i / seq_len, i % seq_len, name, vocab, kIgnoreLabel));
    ++scored;
  }
  if (scored == 0)
    fail(fmt::format("no scored labels (every label is {}); accuracy is undefined", kIgnoreLabel));
  EvalSet set;
  set.task = name;
  set.seq_len = seq_len;
  set.data.batch = rows;
  set.data.seq_len = seq_len;
  // Every value was checked to lie in [kIgnoreLabel, vocab), and vocab fits int32.
  set.data.inputs.assign(inputs.begin(), inputs.end());
  set.data.labels.assign(labels.begin(), labels.end());
  return set;
}

uint64_t hash_row(const int32_t* row, int64_t seq_len) {
  uint64_t h = splitmix64(static_cast<uint64_t>(seq_len));
  for (int64_t t = 0; t < seq_len; ++t) {
    h = splitmix64(h ^ static_cast<uint32_t>(row[t]));
  }
  return h;
}

void SequenceFilter::add(const Batch& batch) {
  for (int64_t r = 0; r < batch.batch; ++r) {
    hashes_.insert(hash_row(batch.inputs.data() + r * batch.seq_len, batch.seq_len));
  }
}

void SequenceFilter::add(const std::vector<EvalSet>& sets) {
  for (const auto& set : sets) add(set.data);
}

bool SequenceFilter::contains(const int32_t* row, int64_t seq_len) const {
  return hashes_.count(hash_row(row, seq_len)) > 0;
}

Batch sample_filtered(const Task& task, int64_t batch, int64_t seq_len, uint64_t seed,
                      const SequenceFilter& filter, int64_t* rejected) {
  constexpr int64_t kMaxAttempts = 1000;
  Batch b = task.sample(batch, seq_len, seed);
  if (rejected) *rejected = 0;
  if (filter.size() == 0) return b;
  for (int64_t r = 0; r < batch; ++r) {
    int32_t* inputs = b.inputs.data() + r * seq_len;
    int32_t* labels = b.labels.data() + r * seq_len;
    for (int64_t attempt = 1; filter.contains(inputs, seq_len); ++attempt) {
      if (attempt > kMaxAttempts) {
        throw UserError(fmt::format(
            "{}: {} redraws at seq_len {} all matched eval sequences; the task has too few "
            "distinct sequences (raise task.vocab_size or lower eval.num_examples)",
            task.name(), kMaxAttempts, seq_len));
      }
      task.sample_row(row_seed(seed, r, attempt), seq_len, Split::kTrain, inputs, labels);
      if (rejected) ++*rejected;
    }
  }
  return b;
}

}  // namespace kimi::tasks
