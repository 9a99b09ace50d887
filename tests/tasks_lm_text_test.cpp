// The byte-level LM task on a text file (suite Tasks): windows of the text with next-byte
// labels, the held-out tail, and a missing file named in the error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/tensor/error.h"
#include "tasks/task.h"
#include "tests/tasks_fixture.h"

namespace kimi::tasks {
namespace {

using tasks_test::task_config;

TEST(Tasks, LmReadsWindowsAndHoldsOutTheTail) {
  const auto path = std::filesystem::temp_directory_path() / "kimi_tasks_lm.txt";
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>('a' + i % 26);
  std::ofstream(path) << text;
  TaskConfig c = task_config("lm");
  c.lm.path = path.string();
  const auto task = make_task(c);
  EXPECT_EQ(task->vocab_size(), 256);
  const Batch b = task->sample(4, 32, 1);
  for (int64_t t = 0; t + 1 < 32; ++t) EXPECT_EQ(b.labels[t], b.inputs[t + 1]);
  EXPECT_EQ(b.labels[31], (b.inputs[31] - 'a' + 1) % 26 + 'a');
  EXPECT_THROW(task->check_seq_len(100), UserError);  // the 100-byte tail cannot hold 101
  std::filesystem::remove(path);
  c.lm.path = "/nonexistent/corpus.txt";
  try {
    make_task(c);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/corpus.txt"), std::string::npos);
  }
}

}  // namespace
}  // namespace kimi::tasks
