// The CPU cost estimate behind `kimi-lab run`'s warning (trainer/cost_estimate.h): measured,
// scaled to the steps and evals, growing with the model; the CPU-sized variant it suggests
// loads for every paper-size config and is far cheaper.
#include "trainer/cost_estimate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

namespace kimi {
namespace {

std::string experiment(const char* file) {
  return (std::filesystem::path(KIMI_SOURCE_DIR) / "experiments" / file).string();
}

const std::vector<std::string> kTiny = {"model.d_model=16",         "model.head_dim=8",
                                        "train.batch_size=8",       "train.seq_len=64",
                                        "eval.seq_lens=[64,128]",   "eval.num_examples=16",
                                        "task.mqar.num_kv_pairs=4", "task.vocab_size=64"};

TEST(CostEstimate, ScalesTheTimedStepToStepsAndEvals) {
  std::vector<std::string> o = kTiny;
  o.push_back("train.eval_every=50");
  const RunConfig cfg = load_config("", o);
  const CostEstimate e = estimate_cpu_cost(cfg, 120);
  EXPECT_EQ(e.rows_timed, 8);
  EXPECT_EQ(e.steps, 120);
  EXPECT_EQ(e.evals, 3);  // steps 50, 100 and the last
  EXPECT_GT(e.step_s, 0);
  EXPECT_GT(e.eval_s, 0);
  EXPECT_DOUBLE_EQ(e.total_s(), 120 * e.step_s + 3 * e.eval_s);
  EXPECT_EQ(estimate_cpu_cost(cfg, 0).total_s(), 0);
  // eval_every 0: one evaluation, at the end.
  o.push_back("train.eval_every=0");
  EXPECT_EQ(estimate_cpu_cost(load_config("", o), 120).evals, 1);
}

// The scaling arithmetic, on given timings (timing two models against each other on a shared
// machine is a benchmark, not a test: a load spike once made the tiny model look 10x slower).
TEST(CostEstimate, ScalesAFixedAndAPerRowCostToTheBatch) {
  // 2 rows 0.3 s, 8 rows 0.6 s: 0.05 s a row + 0.2 s fixed; 64 rows: 0.2 + 3.2.
  EXPECT_DOUBLE_EQ(scale_to_batch(0.3, 2, 0.6, 8, 64), 0.2 + 0.05 * 64);
  // Twice the per-row cost doubles the per-row part, not the fixed one.
  EXPECT_DOUBLE_EQ(scale_to_batch(0.4, 2, 1.0, 8, 64), 0.2 + 0.1 * 64);
  // Noise that makes the larger pass faster: no negative per-row cost, never below t_big.
  EXPECT_DOUBLE_EQ(scale_to_batch(0.7, 2, 0.6, 8, 64), 0.6);
  // A batch no larger than the timed rows is never cheaper than the timed pass.
  EXPECT_DOUBLE_EQ(scale_to_batch(0.3, 2, 0.6, 8, 4), 0.6);
  // One row count alone (batch <= 2): proportional.
  EXPECT_DOUBLE_EQ(scale_to_batch(0.5, 2, 0.5, 2, 2), 0.5);
}

TEST(CostEstimate, CpuSizedVariantLoadsForEveryPaperConfig) {
  for (const char* file : {"mqar.yaml", "palindrome.yaml", "stack.yaml"}) {
    const std::string path = experiment(file);
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path;
    const RunConfig paper = load_config(path, {});
    std::vector<std::string> small_overrides = cpu_sized_overrides(paper);
    RunConfig small;
    ASSERT_NO_THROW(small = load_config(path, small_overrides)) << file;
    EXPECT_EQ(small.task.name, paper.task.name);
    EXPECT_EQ(small.model.mixer, paper.model.mixer);
    EXPECT_EQ(small.train.seq_len, 128);
    EXPECT_LT(small.train.steps * small.train.seq_len * small.model.d_model,
              paper.train.steps * paper.train.seq_len * paper.model.d_model / 100)
        << file;
  }
}

TEST(CostEstimate, DurationsReadAsWords) {
  EXPECT_EQ(format_duration(221 * 3600.0), "about 221 hours");
  EXPECT_EQ(format_duration(1.5 * 3600), "about 1.5 hours");
  EXPECT_EQ(format_duration(300), "about 5 minutes");
  EXPECT_EQ(format_duration(20), "about 20 seconds");
}

}  // namespace
}  // namespace kimi
