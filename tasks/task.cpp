// The Task base class, the factory and length checks (tasks/task.h); the generators live in
// palindrome.cpp, mqar.cpp, stack.cpp and lm.cpp.
#include "tasks/task.h"

#include "core/tensor/error.h"
#include "tasks/generators.h"
#include "tasks/rng.h"

namespace kimi::tasks {

uint64_t row_seed(uint64_t seed, int64_t row, int64_t attempt) {
  // Attempt 0 is the plain row seed; redraws (attempt > 0) hash in the attempt as well.
  const uint64_t base = mix_seed(seed, static_cast<uint64_t>(row));
  return attempt == 0 ? base : mix_seed(base, static_cast<uint64_t>(attempt));
}

Batch empty_batch(int64_t batch, int64_t seq_len) {
  KIMI_CHECK(batch > 0 && seq_len > 0, "batch {} and seq_len {} must be > 0", batch, seq_len);
  Batch b;
  b.batch = batch;
  b.seq_len = seq_len;
  b.inputs.assign(static_cast<size_t>(batch * seq_len), 0);
  b.labels.assign(static_cast<size_t>(batch * seq_len), kIgnoreLabel);
  return b;
}

Batch Task::sample(int64_t batch, int64_t seq_len, uint64_t seed) const {
  check_seq_len(seq_len);
  Batch b = empty_batch(batch, seq_len);
  for (int64_t r = 0; r < batch; ++r) {
    sample_row(row_seed(seed, r, 0), seq_len, Split::kTrain, b.inputs.data() + r * seq_len,
               b.labels.data() + r * seq_len);
  }
  return b;
}

int64_t resolved_vocab_size(const TaskConfig& config) {
  if (config.vocab_size > 0) return config.vocab_size;
  if (config.name == "mqar") return 8192;
  if (config.name == "lm") return 256;
  return 128;  // palindrome, stack
}

std::vector<int32_t> sample_distinct(Rng& rng, int64_t lo, int64_t hi, int64_t k) {
  const int64_t range = hi - lo;
  KIMI_CHECK(k >= 0 && k <= range, "cannot draw {} distinct values from [{}, {})", k, lo, hi);
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(k));
  if (k * 4 <= range) {
    // Sparse draw: reject repeats (at most 1/4 of draws collide on average).
    std::vector<uint8_t> seen(static_cast<size_t>(range), 0);
    while (static_cast<int64_t>(out.size()) < k) {
      const int64_t v = rng.below(static_cast<uint64_t>(range));
      if (seen[v]) continue;
      seen[v] = 1;
      out.push_back(static_cast<int32_t>(lo + v));
    }
    return out;
  }
  // Dense draw: partial Fisher-Yates over the whole range.
  std::vector<int32_t> pool(static_cast<size_t>(range));
  for (int64_t i = 0; i < range; ++i) pool[i] = static_cast<int32_t>(lo + i);
  for (int64_t i = 0; i < k; ++i) {
    std::swap(pool[i], pool[i + rng.below(static_cast<uint64_t>(range - i))]);
    out.push_back(pool[i]);
  }
  return out;
}

std::unique_ptr<Task> make_task(const TaskConfig& config) {
  if (config.name == "palindrome") return make_palindrome_task(config);
  if (config.name == "mqar") return make_mqar_task(config);
  if (config.name == "stack") return make_stack_task(config);
  if (config.name == "lm") return make_lm_task(config);
  throw UserError(
      fmt::format("task.name: expected one of palindrome, mqar, stack, lm; got '{}'", config.name));
}

void check_task_lengths(const TaskConfig& config, int64_t train_seq_len,
                        const std::vector<int64_t>& eval_seq_lens) {
  const auto task = make_task(config);
  task->check_seq_len(train_seq_len);
  if (config.mixed_lengths) {
    for (int64_t len : config.train_seq_lens) task->check_seq_len(len);
  }
  for (int64_t len : eval_seq_lens) task->check_seq_len(len);
}

}  // namespace kimi::tasks
