// Seeds as a sweep axis (mean, sd and count per group; the best lr chosen on the mean), `when`
// cases, and the paper's Figure 4 sweep files expanding to every point.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "tests/sweep_fixture.h"
#include "trainer/sweep_results.h"

namespace kimi {
namespace {

using namespace sweep_test;  // NOLINT: the fixture and readers of tests/sweep_fixture.h

// ---- seeds ---------------------------------------------------------------------------------

TEST(SweepSeeds, SeedStatIsMeanSampleSdAndCountOverFiniteValues) {
  const SeedStat s = seed_stat({0.5, 1.0, std::nan("")});
  EXPECT_EQ(s.n, 2);
  EXPECT_DOUBLE_EQ(s.mean, 0.75);
  EXPECT_NEAR(s.sd, std::sqrt(0.125), 1e-12);  // sum of squares 0.125, n - 1 = 1
  const SeedStat one = seed_stat({0.25});
  EXPECT_EQ(one.n, 1);
  EXPECT_TRUE(std::isnan(one.sd));
  EXPECT_EQ(seed_stat({}).n, 0);
}

TEST(SweepSeeds, SeedsAreTheLastAxisAndTheSummaryAggregatesEachGroup) {
  SweepFixture f("seeds", "grid:\n  train.lr: [1.0e-3, 3.0e-3]\nseeds: [0, 1]\n");
  SweepReport rep = f.run();
  ASSERT_EQ(rep.points.size(), 4u);
  EXPECT_EQ(rep.points[1].name, "lr=0.001,seed=1");
  EXPECT_EQ(rep.points[1].group, "lr=0.001");
  EXPECT_EQ(rep.points[1].config.train.seed, 1);
  const auto rows = lines(read_file(f.dir() / "summary.csv"));
  ASSERT_EQ(rows.size(), 5u);
  const auto header = cells(rows[0]);
  auto col = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    EXPECT_NE(it, header.end()) << name;
    return static_cast<size_t>(it - header.begin());
  };
  for (size_t g = 0; g < 2; ++g) {
    const auto a = cells(rows[1 + 2 * g]), b = cells(rows[2 + 2 * g]);
    const SeedStat want =
        seed_stat({std::stod(a[col("best_acc@T16")]), std::stod(b[col("best_acc@T16")])});
    for (const auto& r : {a, b}) {
      EXPECT_EQ(r[col("group")], rep.points[2 * g].group);
      EXPECT_EQ(r[col("group_runs")], "2");
      // The CSV keeps 7 significant digits.
      EXPECT_NEAR(std::stod(r[col("best_acc_mean@T16")]), want.mean, 1e-6);
      EXPECT_NEAR(std::stod(r[col("best_acc_sd@T16")]), want.sd, 1e-6);
      EXPECT_EQ(r[col("best_acc_n@T16")], "2");
    }
  }
  // Exactly one of the two lr groups is marked best, both of its rows.
  int best = 0;
  for (size_t i = 1; i < rows.size(); ++i) best += cells(rows[i])[col("best_lr_on_mean")] == "1";
  EXPECT_EQ(best, 2);
}

TEST(SweepSeeds, BestLrIsChosenOnTheMeanNotOnOneSeedsMaximum) {
  // lr a: seeds reach 1.0 and 0.0 (mean 0.5, the luckiest seed 1.0); lr b: 0.6 and 0.6.
  std::vector<SweepPoint> points(4);
  const char* names[] = {"lr=a,seed=0", "lr=a,seed=1", "lr=b,seed=0", "lr=b,seed=1"};
  const double best[] = {1.0, 0.0, 0.6, 0.6};
  std::vector<SweepRun> runs(4);
  for (size_t i = 0; i < 4; ++i) {
    points[i].name = names[i];
    points[i].group = i < 2 ? "lr=a" : "lr=b";
    points[i].values = {{"train.lr", i < 2 ? "a" : "b"}, {"train.seed", i % 2 ? "1" : "0"}};
    points[i].config.train.seq_len = 64;
    runs[i].point = &points[i];
    runs[i].best[64] = best[i];
  }
  const auto groups = seed_groups(runs);
  EXPECT_EQ(best_lr_groups(groups), (std::set<std::string>{"lr=b"}));
  EXPECT_DOUBLE_EQ(selection_stat(groups.at("lr=a")).mean, 0.5);
  // Another family (a different length) picks its own best lr.
  for (size_t i = 0; i < 4; ++i)
    points[i].values.emplace_back("train.seq_len", i < 2 ? "64" : "128");
  EXPECT_EQ(best_lr_groups(seed_groups(runs)).size(), 2u);
}

TEST(SweepSeeds, AWhenCaseAddsOverridesToTheMatchingPointsOnly) {
  SweepFixture f("when",
                 "grid:\n  model.mixer: [kda, attention]\n  train.steps: [6, 12]\n"
                 "when:\n  - match: {model.mixer: attention}\n    overrides: [model.rope=true]\n");
  SweepReport rep = f.run({}, false, 0);
  ASSERT_EQ(rep.points.size(), 4u);
  EXPECT_FALSE(rep.points[0].config.model.rope);
  EXPECT_TRUE(rep.points[2].config.model.rope);
  EXPECT_TRUE(rep.points[3].config.model.rope);
  f.rewrite(
      "grid:\n  model.mixer: [kda]\nwhen:\n  - match: {model.mixr: kda}\n"
      "    overrides: [model.rope=true]\n");
  try {
    load_sweep_spec(f.file());
    ADD_FAILURE() << "a when.match key outside the grid was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("model.mixr"), std::string::npos) << e.what();
  }
}

// ---- the paper's sweep files ------------------------------------------------------------------

TEST(SweepFigure4, ThePaperSweepsExpandToEveryMixerLengthLrAndSeed) {
  for (const char* task : {"palindrome", "mqar", "stack"}) {
    const std::string file = fmt::format("{}/paper/figure4_{}.yaml", KIMI_EXPERIMENTS_DIR, task);
    const SweepSpec spec = load_sweep_spec(file);
    std::vector<SweepPoint> points = expand_grid(spec);
    ASSERT_EQ(points.size(), 5u * 4u * 4u * 2u) << file;  // mixers x lengths x lrs x seeds
    validate_points(spec, points);
    std::set<std::string> mixers, groups;
    std::set<int64_t> lens, seeds;
    for (const auto& p : points) {
      const auto& c = p.config;
      ASSERT_EQ(c.model.mixer.size(), 1u) << p.name;
      mixers.insert(c.model.mixer[0]);
      lens.insert(c.train.seq_len);
      seeds.insert(c.train.seed);
      groups.insert(p.group);
      EXPECT_EQ(c.task.name, task);
      EXPECT_EQ(c.model.rope, c.model.mixer[0] == "attention") << p.name;
      // Early stop at 99.5% except at 1024, whose curves run every step.
      EXPECT_DOUBLE_EQ(c.train.target_accuracy, c.train.seq_len == 1024 ? 0.0 : 0.995) << p.name;
      EXPECT_EQ(c.train.steps, 20000);
      EXPECT_TRUE(c.eval.seq_lens.empty() ||
                  c.eval.seq_lens == std::vector<int64_t>{c.train.seq_len});
    }
    EXPECT_EQ(mixers, (std::set<std::string>{"kda", "gdn", "mamba2", "deltanet", "attention"}));
    EXPECT_EQ(lens, (std::set<int64_t>{256, 512, 1024, 2048}));
    EXPECT_EQ(seeds.size(), 2u);
    EXPECT_EQ(groups.size(), points.size() / 2);
  }
}

// Every Figure 4 sweep file (the full grids, the budget cuts, the decay-init and deeper-stack
// checks) loads, expands and validates here, so that none waits for a GPU to show a bad key.
TEST(SweepFigure4, EveryFigure4SweepFileExpandsAndValidates) {
  int files = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(std::string(KIMI_EXPERIMENTS_DIR) + "/paper")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("figure4_", 0) != 0 || e.path().extension() != ".yaml") continue;
    ++files;
    const SweepSpec spec = load_sweep_spec(e.path().string());
    std::vector<SweepPoint> points = expand_grid(spec);
    EXPECT_GE(points.size(), 12u) << name;
    validate_points(spec, points);
    for (const auto& p : points) {
      EXPECT_EQ(p.config.model.rope, p.config.model.mixer[0] == "attention") << name << p.name;
      if (name == "figure4_stack_deeper.yaml") {
        EXPECT_DOUBLE_EQ(p.config.task.stack.push_prob, 0.8) << p.name;
        EXPECT_EQ(p.config.task.stack.num_stacks, 64) << p.name;
      }
    }
  }
  EXPECT_GE(files, 8);
}

}  // namespace
}  // namespace kimi
