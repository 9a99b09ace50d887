// What the task suites share (tasks_palindrome_test.cpp, tasks_mqar_test.cpp,
// tasks_stack_test.cpp, tasks_eval_test.cpp, tasks_lm_text_test.cpp): a TaskConfig naming one
// task, and row r of a [rows, seq_len] batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tasks/task.h"
#include "trainer/config.h"

namespace kimi::tasks::tasks_test {

inline TaskConfig task_config(const std::string& name) {
  TaskConfig c;
  c.name = name;
  return c;
}

inline const int32_t* row(const std::vector<int32_t>& v, int64_t r, int64_t seq_len) {
  return v.data() + r * seq_len;
}

}  // namespace kimi::tasks::tasks_test
