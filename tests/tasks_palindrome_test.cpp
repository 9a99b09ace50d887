// The palindrome task (suite Tasks): labels are the reversed input, checked against an
// independent reading of the row; score_sep and a fixed length.
#include <gtest/gtest.h>

#include "tasks/task.h"
#include "tests/tasks_fixture.h"

namespace kimi::tasks {
namespace {

using tasks_test::row;
using tasks_test::task_config;

TEST(Tasks, PalindromeLabelsAreTheReversedInput) {
  auto task = make_task(task_config("palindrome"));
  const int64_t T = 64, n = (T - 1) / 2;  // 31 tokens, <sep> at 31, reversal at 32..62, pad 63
  const Batch b = task->sample(8, T, 7);
  for (int64_t r = 0; r < b.batch; ++r) {
    const int32_t* x = row(b.inputs, r, T);
    const int32_t* y = row(b.labels, r, T);
    EXPECT_EQ(x[n], 1);
    EXPECT_EQ(x[T - 1], 0);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_GE(x[i], 2);
      EXPECT_EQ(x[2 * n - i], x[i]);  // x_1..x_n <sep> x_n..x_1
    }
    for (int64_t t = 0; t < T; ++t) {
      // Reversed token at n+1+j is x_{n-j}; it must predict x_{n-j-1}, ending at x_1.
      const bool scored = t > n && t < 2 * n;
      EXPECT_EQ(y[t], scored ? x[2 * n - (t + 1)] : kIgnoreLabel) << "row " << r << " t " << t;
    }
  }
}

TEST(Tasks, PalindromeScoreSepAndFixedLength) {
  TaskConfig c = task_config("palindrome");
  c.palindrome.score_sep = true;
  c.palindrome.length = 5;
  const Batch b = make_task(c)->sample(2, 20, 1);
  EXPECT_EQ(b.inputs[5], 1);
  EXPECT_EQ(b.labels[5], b.inputs[4]);  // at <sep> the model names x_n
  int64_t scored = 0;
  for (int64_t t = 0; t < 20; ++t) scored += b.labels[t] != kIgnoreLabel;
  EXPECT_EQ(scored, 5);
  for (int64_t t = 11; t < 20; ++t) EXPECT_EQ(b.inputs[t], 0);  // padding after 2n+1 tokens
}

}  // namespace
}  // namespace kimi::tasks
