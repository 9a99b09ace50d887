// Internal to tasks/: the per-task factories behind make_task and the sampling helpers they
// share. The token layout of each task is documented in its .cpp file.
#pragma once

#include <memory>
#include <vector>

#include "tasks/rng.h"
#include "tasks/task.h"

namespace kimi::tasks {

std::unique_ptr<Task> make_palindrome_task(const TaskConfig& config);
std::unique_ptr<Task> make_mqar_task(const TaskConfig& config);
std::unique_ptr<Task> make_stack_task(const TaskConfig& config);
std::unique_ptr<Task> make_lm_task(const TaskConfig& config);

// vocab_size 0 means the task's default (see TaskConfig::vocab_size).
int64_t resolved_vocab_size(const TaskConfig& config);

// k distinct values from [lo, hi) in random order, as numpy's choice(replace=False) draws
// them: every ordered k-subset equally likely.
std::vector<int32_t> sample_distinct(Rng& rng, int64_t lo, int64_t hi, int64_t k);

}  // namespace kimi::tasks
