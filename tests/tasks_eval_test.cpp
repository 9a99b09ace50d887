// What evaluation relies on (suite Tasks): the same seed draws the same batch for every task,
// the filter keeps training rows out of the eval set (or gives up with a UserError), eval sets
// per length are stable, and the accuracy helper counts tokens and exact matches.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/tensor/error.h"
#include "tasks/eval_set.h"
#include "tasks/metrics.h"
#include "tasks/task.h"
#include "tests/tasks_fixture.h"
#include "trainer/config.h"

namespace kimi::tasks {
namespace {

using tasks_test::row;
using tasks_test::task_config;

TEST(Tasks, SameSeedSameBatchOtherSeedsDiffer) {
  std::vector<TaskConfig> configs = {task_config("palindrome"), task_config("mqar"),
                                     task_config("stack"), task_config("mqar")};
  configs[3].mqar.form = "zoology";
  for (const auto& c : configs) {
    const auto task = make_task(c);
    const Batch a = task->sample(4, 64, 42), b = task->sample(4, 64, 42),
                d = task->sample(4, 64, 43);
    EXPECT_EQ(a.inputs, b.inputs) << task->name();
    EXPECT_EQ(a.labels, b.labels) << task->name();
    EXPECT_NE(a.inputs, d.inputs) << task->name();
    EXPECT_NE(std::vector<int32_t>(a.inputs.begin(), a.inputs.begin() + 64),
              std::vector<int32_t>(a.inputs.begin() + 64, a.inputs.begin() + 128))
        << "rows of a batch differ";
  }
}

TEST(Tasks, FilterKeepsTrainingRowsOutOfTheEvalSet) {
  TaskConfig c = task_config("palindrome");
  c.vocab_size = 4;  // 2 content tokens, n = 3: only 8 distinct rows at seq_len 7
  const auto task = make_task(c);
  const EvalSet eval = make_eval_set(*task, 7, 3, 99);
  SequenceFilter filter;
  filter.add(eval.data);
  ASSERT_GE(filter.size(), 2u);
  int64_t rejected = 0;
  const Batch b = sample_filtered(*task, 64, 7, 5, filter, &rejected);
  EXPECT_GT(rejected, 0);
  for (int64_t r = 0; r < b.batch; ++r) EXPECT_FALSE(filter.contains(row(b.inputs, r, 7), 7));
  const Batch again = sample_filtered(*task, 64, 7, 5, filter);
  EXPECT_EQ(b.inputs, again.inputs) << "deterministic";
  // Rows that were not redrawn are those of the plain sample.
  const Batch plain = task->sample(64, 7, 5);
  for (int64_t r = 0; r < b.batch; ++r) {
    if (!filter.contains(row(plain.inputs, r, 7), 7)) {
      EXPECT_EQ(0, std::memcmp(row(plain.inputs, r, 7), row(b.inputs, r, 7), 7 * 4));
    }
  }
}

TEST(Tasks, FilterGivesUpWithAUserErrorWhenEverythingIsHeldOut) {
  TaskConfig c = task_config("palindrome");
  c.vocab_size = 3;  // a single possible row
  const auto task = make_task(c);
  SequenceFilter filter;
  filter.add(make_eval_set(*task, 5, 1, 0).data);
  EXPECT_THROW(sample_filtered(*task, 1, 5, 0, filter), UserError);
}

TEST(Tasks, EvalSetsPerLengthAreStableAndCarryTheSlice) {
  RunConfig run;
  const auto task = make_task(run.task);
  EvalConfig eval;
  eval.seq_lens = {64, 128};
  eval.num_examples = 4;
  const auto sets = make_eval_sets(*task, eval);
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[1].seq_len, 128);
  EXPECT_EQ(sets[1].num_kv_pairs, 16);
  EXPECT_EQ(sets[0].task, "mqar");
  eval.seq_lens = {128};
  EXPECT_EQ(make_eval_sets(*task, eval)[0].data.inputs, sets[1].data.inputs);
  EXPECT_NE(sets[1].data.inputs, task->sample(4, 128, eval.seed).inputs);
}

TEST(Tasks, AccuracyCountsTokensAndExactMatch) {
  Batch b = empty_batch(3, 4);
  b.labels = {5, -100, 6, -100, /**/ 7, 8, -100, -100, /**/ -100, -100, -100, -100};
  const std::vector<int32_t> pred = {5, 0, 6, 0, /**/ 7, 9, 0, 0, /**/ 1, 1, 1, 1};
  Accuracy acc;
  accumulate_accuracy(b, pred.data(), &acc);
  EXPECT_EQ(acc.correct, 3);
  EXPECT_EQ(acc.total, 4);
  EXPECT_EQ(acc.seq_correct, 1);
  EXPECT_EQ(acc.seqs, 2);  // the row without labels is left out
  EXPECT_DOUBLE_EQ(acc.token_acc(), 0.75);
  EXPECT_DOUBLE_EQ(acc.exact_match(), 0.5);
  EXPECT_DOUBLE_EQ(Accuracy{}.token_acc(), 0.0);
}

}  // namespace
}  // namespace kimi::tasks
