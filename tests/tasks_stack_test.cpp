// The stack task (suite Tasks): each label is the element on top of that stack, max_depth caps
// every stack (0 keeps the old rows), and stack_pop_depths replays the rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/tensor/error.h"
#include "tasks/task.h"
#include "tests/tasks_fixture.h"

namespace kimi::tasks {
namespace {

using tasks_test::row;
using tasks_test::task_config;

TEST(Tasks, StackLabelIsTheElementOnTopOfThatStack) {
  TaskConfig c = task_config("stack");
  c.stack.num_stacks = 4;  // few stacks: deep stacks and many pops
  const int64_t T = 256;
  const Batch b = make_task(c)->sample(8, T, 5);
  int64_t pops = 0;
  for (int64_t r = 0; r < b.batch; ++r) {
    const int32_t* x = row(b.inputs, r, T);
    const int32_t* y = row(b.labels, r, T);
    std::vector<std::vector<int32_t>> stacks(4);
    for (int64_t t = 0; t + 3 <= T; t += 3) {
      const int32_t id = x[t + 1] - 3;
      ASSERT_TRUE(id >= 0 && id < 4);
      ASSERT_GE(x[t + 2], 7);  // elements after 3 specials + 4 ids
      if (x[t] == 1) {
        stacks[id].push_back(x[t + 2]);
        EXPECT_EQ(y[t + 1], kIgnoreLabel);
      } else {
        ASSERT_EQ(x[t], 2);
        ASSERT_FALSE(stacks[id].empty()) << "pop from an empty stack";
        EXPECT_EQ(y[t + 1], stacks[id].back());
        EXPECT_EQ(x[t + 2], stacks[id].back());
        stacks[id].pop_back();
        ++pops;
      }
      EXPECT_EQ(y[t], kIgnoreLabel);
      EXPECT_EQ(y[t + 2], kIgnoreLabel);
    }
    EXPECT_EQ(x[T - 1], 0);  // 256 = 85 ops + one pad
  }
  EXPECT_GT(pops, 8 * 85 / 4);
}

// Replays a stack row and returns the deepest any stack got.
size_t deepest_stack(const Batch& b, int64_t r, int64_t num_stacks) {
  const int32_t* x = b.inputs.data() + r * b.seq_len;
  std::vector<size_t> depth(static_cast<size_t>(num_stacks), 0);
  size_t deepest = 0;
  for (int64_t t = 0; t + 3 <= b.seq_len; t += 3) {
    const size_t id = static_cast<size_t>(x[t + 1] - 3);
    if (x[t] == 1) deepest = std::max(deepest, ++depth[id]);
    if (x[t] == 2) --depth[id];
  }
  return deepest;
}

TEST(Tasks, StackMaxDepthCapsEveryStackAndZeroKeepsTheOldRows) {
  TaskConfig c = task_config("stack");
  c.stack.num_stacks = 2;
  c.stack.push_prob = 0.9;  // mostly pushes: without a cap the stacks grow deep
  const int64_t T = 300;
  const Batch free_rows = make_task(c)->sample(4, T, 11);
  size_t deepest = 0;
  for (int64_t r = 0; r < 4; ++r) deepest = std::max(deepest, deepest_stack(free_rows, r, 2));
  EXPECT_GT(deepest, 10u);
  c.stack.max_depth = 1000;  // a cap never reached draws exactly as max_depth 0 does
  EXPECT_EQ(make_task(c)->sample(4, T, 11).inputs, free_rows.inputs);
  c.stack.max_depth = 3;
  const Batch capped = make_task(c)->sample(4, T, 11);
  for (int64_t r = 0; r < 4; ++r) EXPECT_LE(deepest_stack(capped, r, 2), 3u);
  int64_t scored = 0;  // both stacks full: pushes turn into pops, which are scored
  for (int32_t y : capped.labels) scored += y != kIgnoreLabel;
  EXPECT_GT(scored, 4 * 100 / 3);
}

// stack_pop_depths replays a row: a hand-made one gives the depths a pop reads, and the two
// configurations the report contrasts differ as the random walk says they must.
TEST(Tasks, StackPopDepthsReplayTheRows) {
  Batch b;
  b.batch = 1, b.seq_len = 22;  // push 0, push 0, pop 0, push 1, pop 1, pop 0, then pads
  b.inputs = {1, 3, 9, 1, 3, 10, 2, 3, 10, 1, 4, 11, 2, 4, 11, 2, 3, 9, 0, 0, 0, 0};
  b.labels.assign(22, kIgnoreLabel);
  EXPECT_EQ(stack_pop_depths(b, 2), (std::vector<int64_t>{2, 1, 1}));
  b.inputs[7] = 3 + 5;  // an id past the two stacks
  EXPECT_THROW(stack_pop_depths(b, 2), Error);
  TaskConfig c = task_config("stack");  // the Figure 4 files: 64 stacks, push probability 0.5
  c.stack.num_stacks = 64;
  c.vocab_size = 128;
  auto share_at_depth_one = [&](int64_t T) {
    const std::vector<int64_t> d = stack_pop_depths(make_task(c)->sample(32, T, 3), 64);
    return static_cast<double>(std::count(d.begin(), d.end(), 1)) / static_cast<double>(d.size());
  };
  EXPECT_GT(share_at_depth_one(1024), 0.8);  // nearly every pop empties its stack
  c.stack.num_stacks = 4;
  c.stack.push_prob = 0.6;
  const std::vector<int64_t> deep = stack_pop_depths(make_task(c)->sample(32, 1024, 3), 4);
  EXPECT_LT(static_cast<double>(std::count(deep.begin(), deep.end(), 1)) /
                static_cast<double>(deep.size()),
            0.3);
}

}  // namespace
}  // namespace kimi::tasks
