// Sweeps (trainer/sweep.h) on a tiny MQAR model, 12 steps a run: grid order and run names,
// validation before anything runs, resume after an interrupted sweep, summary.csv columns, and
// detection of a changed sweep file.
#include "trainer/sweep.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "tests/sweep_fixture.h"
#include "trainer/sweep_results.h"

namespace kimi {
namespace {

using namespace sweep_test;  // NOLINT: the fixture and readers of tests/sweep_fixture.h

TEST(Sweep, GridExpandsInFileOrderWithReadableNames) {
  SweepFixture f("expand",
                 "overrides: [train.steps=5]\n"
                 "grid:\n  model.mixer: [kda, gdn, mamba2, [kda, attention]]\n"
                 "  train.lr: [1.0e-3, 3e-3]\n");
  SweepSpec spec = load_sweep_spec(f.file());
  std::vector<SweepPoint> points = expand_grid(spec);
  ASSERT_EQ(points.size(), 8u);
  std::vector<std::string> names;
  for (const auto& p : points) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "mixer=kda,lr=0.001", "mixer=kda,lr=0.003", "mixer=gdn,lr=0.001",
                       "mixer=gdn,lr=0.003", "mixer=mamba2,lr=0.001", "mixer=mamba2,lr=0.003",
                       "mixer=kda+attention,lr=0.001", "mixer=kda+attention,lr=0.003"}));
  const SweepPoint& p = points[3];
  EXPECT_EQ(p.index, 3);
  EXPECT_EQ(p.dir, (f.dir() / "mixer=gdn,lr=0.003").string());
  ASSERT_GE(p.overrides.size(), 3u);
  EXPECT_EQ(p.overrides[0], "train.steps=5");
  EXPECT_EQ(p.overrides[1], "model.mixer=gdn");
  EXPECT_EQ(p.overrides[2], "train.lr=3e-3");
  EXPECT_EQ(points[6].overrides[1], "model.mixer=[kda, attention]");
  validate_points(spec, points);
  EXPECT_EQ(points[6].config.model.mixer, (std::vector<std::string>{"kda", "attention"}));
  EXPECT_DOUBLE_EQ(points[3].config.train.lr, 3e-3);
  EXPECT_EQ(points[3].config.train.steps, 5);
  EXPECT_EQ(points[3].config.name, "mixer=gdn,lr=0.003");

  // Keys sharing their last part are named in full; no grid is one point named `run`.
  f.rewrite("grid: {train.batch_size: [4], eval.batch_size: [8]}\n");
  EXPECT_EQ(expand_grid(load_sweep_spec(f.file()))[0].name, "train.batch_size=4,eval.batch_size=8");
  f.rewrite("overrides: [train.steps=5]\n");
  auto single = expand_grid(load_sweep_spec(f.file()));
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].name, "run");
}

TEST(Sweep, ABadKeyOrValueFailsBeforeAnythingRuns) {
  SweepFixture f("validate", "grid:\n  model.mixer: [kda]\n  train.lrr: [1.0e-3]\n");
  expect_user_error([&] { f.run(); }, {"train.lrr", "did you mean 'train.lr'", "point 0"});
  EXPECT_FALSE(fs::exists(f.dir()));
  // The bad value is at the last point: still nothing runs.
  f.rewrite("grid:\n  model.mixer: [kda, gdn, fancy]\n");
  expect_user_error([&] { f.run(); }, {"point 2", "mixer=fancy", "model.mixer", "fancy"});
  EXPECT_FALSE(fs::exists(f.dir()));
  f.rewrite("gird:\n  model.mixer: [kda]\n");
  expect_user_error([&] { f.run(); }, {"unknown sweep key 'gird'"});
  f.rewrite("grid:\n  model.mixer: []\n");
  expect_user_error([&] { f.run(); }, {"grid.model.mixer", "non-empty list"});
  f.rewrite("grid:\n  name: [a, b]\n");
  expect_user_error([&] { f.run(); }, {"'name'"});
  f.rewrite("grid:\n  train.lr: [1.0e-3, 0.001]\n");
  expect_user_error([&] { f.run(); }, {"lr=0.001", "twice"});
}

TEST(Sweep, RerunSkipsFinishedPointsAndResumesInterruptedOnes) {
  SweepFixture f("resume", "grid:\n  model.mixer: [kda, gdn, mamba2]\n");
  // Interrupted after the first point.
  SweepReport first = f.run({0});
  EXPECT_EQ(first.actions,
            (std::vector<PointAction>{PointAction::kTrained, PointAction::kNotSelected,
                                      PointAction::kNotSelected}));
  EXPECT_EQ(lines(read_file(f.dir() / "summary.csv")).size(), 2u);  // header + 1 row
  const std::string metrics0 = read_file(f.dir() / "mixer=kda" / "metrics.csv");
  // Point 1 stops half way (a killed process leaves the same: a checkpoint, no finished summary).
  SweepReport second = f.run({1}, false, /*stop_at=*/6);
  EXPECT_EQ(second.actions[1], PointAction::kTrained);
  EXPECT_EQ(point_state(second.points[1]), PointState::kInterrupted);
  EXPECT_EQ(lines(read_file(f.dir() / "summary.csv")).size(), 2u);

  SweepReport all = f.run();
  EXPECT_EQ(all.states, (std::vector<PointState>{PointState::kDone, PointState::kInterrupted,
                                                 PointState::kPending}));
  EXPECT_EQ(all.actions, (std::vector<PointAction>{PointAction::kSkipped, PointAction::kResumed,
                                                   PointAction::kTrained}));
  EXPECT_EQ(read_file(f.dir() / "mixer=kda" / "metrics.csv"), metrics0);           // not retrained
  EXPECT_EQ(lines(read_file(f.dir() / "mixer=gdn" / "metrics.csv")).size(), 13u);  // steps 1..12
  auto rows = lines(read_file(f.dir() / "summary.csv"));
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[1].substr(0, 15), "mixer=kda,done,");
  EXPECT_EQ(rows[2].substr(0, 15), "mixer=gdn,done,");
  EXPECT_EQ(rows[3].substr(0, 18), "mixer=mamba2,done,");
  EXPECT_EQ(lines(read_file(f.dir() / "summary.jsonl")).size(), 3u);
  EXPECT_EQ(all.finished_dirs.size(), 3u);
  // A third run has nothing left to do.
  SweepReport again = f.run();
  for (auto a : again.actions) EXPECT_EQ(a, PointAction::kSkipped);
}

TEST(Sweep, SummaryHasOneRowPerRunWithDottedConfigColumns) {
  SweepFixture f("summary",
                 "overrides: ['eval.seq_lens=[8,16]']\ngrid:\n  train.lr: [1.0e-3, 1.0e+30]\n"
                 "  train.grad_clip: [0]\n");
  SweepReport rep = f.run();
  ASSERT_EQ(rep.failures.size(), 1u);  // lr=1e30 diverges; the sweep goes on and records it
  EXPECT_NE(rep.failures[0].find("non-finite"), std::string::npos) << rep.failures[0];
  auto rows = lines(read_file(f.dir() / "summary.csv"));
  ASSERT_EQ(rows.size(), 3u);
  const auto header = cells(rows[0]);
  const std::vector<std::string> head = {"run",         "status",       "steps_done", "final_loss",
                                         "acc@T8",      "acc@T16",      "exact@T8",   "exact@T16",
                                         "best_acc@T8", "best_acc@T16", "wall_s"};
  ASSERT_GT(header.size(), head.size());
  EXPECT_EQ(std::vector<std::string>(header.begin(), header.begin() + head.size()), head);
  auto col = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    EXPECT_NE(it, header.end()) << name;
    return static_cast<size_t>(it - header.begin());
  };
  const auto ok = cells(rows[1]), bad = cells(rows[2]);
  EXPECT_EQ(ok[0], "lr=0.001,grad_clip=0");
  EXPECT_EQ(ok[col("status")], "done");
  EXPECT_EQ(ok[col("steps_done")], "12");
  EXPECT_EQ(ok[col("train.lr")], "0.001");
  EXPECT_EQ(ok[col("model.mixer")], "kda");
  EXPECT_EQ(ok[col("eval.seq_lens")], "[8,16]");
  EXPECT_EQ(ok[col("name")], "lr=0.001,grad_clip=0");
  const double acc = std::stod(ok[col("acc@T16")]), best = std::stod(ok[col("best_acc@T16")]);
  EXPECT_GE(best, acc);
  EXPECT_LE(best, 1.0);
  EXPECT_EQ(bad[col("status")], "failed");
  EXPECT_EQ(bad[col("acc@T16")], "");  // it never reached an eval
  EXPECT_LT(col("wall_s"), col("train.lr"));
  EXPECT_LT(col("model.mixer"), col("train.lr"));  // declaration order, not alphabetical
  auto json = lines(read_file(f.dir() / "summary.jsonl"));
  ASSERT_EQ(json.size(), 2u);
  auto row = nlohmann::json::parse(json[1]);
  EXPECT_EQ(row["status"], "failed");
  EXPECT_NE(row["error"].get<std::string>().find("non-finite"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(json[0])["eval.seq_lens"], nlohmann::json::array({8, 16}));
  // The failed point is not retried on a re-run.
  EXPECT_EQ(f.run().actions[1], PointAction::kSkipped);
}

// --shard I/N: N shards take every point exactly once, each shard's run leaves a summary of
// what is finished so far, and --summarize rebuilds the merged summary after point directories
// trained elsewhere are copied in (the Slurm job array of tools/slurm_sweep.sh).
TEST(Sweep, ShardsSplitThePointsAndSummarizeMergesThem) {
  SweepFixture f("shard", "grid:\n  model.mixer: [kda, gdn, deltanet]\n  train.lr: [1.0e-3]\n");
  SweepOptions o;
  o.progress = false;
  o.shard = parse_shard("1/2");
  EXPECT_EQ(chosen_points(o, 5), (std::vector<bool>{false, true, false, true, false}));
  o.only = {0, 1, 3};
  EXPECT_EQ(chosen_points(o, 5), (std::vector<bool>{false, true, false, true, false}));
  o.only.clear();
  // Shard 0 of 2 trains points 0 and 2 here; shard 1 trains point 1 in another folder (another
  // machine), whose point directory is then copied in.
  SweepOptions s0 = o;
  s0.shard = parse_shard("0/2");
  const SweepReport r0 = run_sweep(f.file(), s0);
  EXPECT_EQ(r0.actions, (std::vector<PointAction>{PointAction::kTrained, PointAction::kNotSelected,
                                                  PointAction::kTrained}));
  EXPECT_EQ(lines(read_file(f.dir() / "summary.csv")).size(), 3u);  // header + 2 rows
  SweepFixture other("shard_other",
                     "grid:\n  model.mixer: [kda, gdn, deltanet]\n  train.lr: [1.0e-3]\n");
  SweepOptions s1 = o;
  s1.shard = parse_shard("1/2");
  const SweepReport r1 = run_sweep(other.file(), s1);
  EXPECT_EQ(r1.actions[1], PointAction::kTrained);
  const std::string point = r1.points[1].name;
  fs::copy(other.dir() / point, f.dir() / point, fs::copy_options::recursive);
  fs::remove(f.dir() / point / ".lock");
  SweepOptions merge;
  merge.summarize = true;
  const SweepReport m = run_sweep(f.file(), merge);
  for (auto a : m.actions) EXPECT_EQ(a, PointAction::kNotSelected);  // nothing trained
  EXPECT_EQ(m.finished_dirs.size(), 3u);
  const auto rows = lines(read_file(f.dir() / "summary.csv"));
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_NE(rows[2].find(point), std::string::npos) << rows[2];
  // Bad shards are one line naming the flag; --summarize needs a started sweep.
  for (const char* bad : {"2/2", "-1/2", "0/0", "1", "a/b", "1/2/3", ""}) {
    try {
      parse_shard(bad);
      ADD_FAILURE() << bad;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("--shard"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  }
  SweepFixture fresh("shard_fresh", "grid:\n  model.mixer: [kda]\n");
  EXPECT_THROW(run_sweep(fresh.file(), merge), UserError);
}

TEST(Sweep, AChangedSweepFileIsDetected) {
  SweepFixture f("changed", "grid:\n  train.lr: [1.0e-3]\n");
  f.run();
  f.rewrite("grid:\n  train.lr: [1.0e-3, 3.0e-3]\n");
  expect_user_error([&] { f.run(); }, {"changed", "train.lr", "new name", "--force"});
  // The base config changing is a change too.
  f.rewrite("grid:\n  train.lr: [1.0e-3]\n");
  const std::string base = read_file(f.root / "base.yaml");
  write_file(f.root / "base.yaml", base + "name: x\n");  // harmless: the sweep sets name
  EXPECT_EQ(f.run().actions[0], PointAction::kSkipped);
  std::string longer = base;
  longer.replace(longer.find("steps: 12"), 9, "steps: 14");
  write_file(f.root / "base.yaml", longer);
  expect_user_error([&] { f.run(); }, {"train.steps 12 -> 14"});
  // --force retrains a point whose config changed, from scratch.
  SweepReport longer_run = f.run({}, /*force=*/true);
  EXPECT_EQ(longer_run.actions[0], PointAction::kTrained);
  EXPECT_EQ(lines(read_file(f.dir() / "lr=0.001" / "metrics.csv")).size(), 15u);  // steps 1..14
  write_file(f.root / "base.yaml", base);
  f.run({}, true);
  // --force keeps unchanged points and trains new ones.
  f.rewrite("grid:\n  train.lr: [1.0e-3, 3.0e-3]\n");
  SweepReport forced = f.run({}, /*force=*/true);
  EXPECT_EQ(forced.actions,
            (std::vector<PointAction>{PointAction::kSkipped, PointAction::kTrained}));
  EXPECT_EQ(f.run().actions,
            (std::vector<PointAction>{PointAction::kSkipped, PointAction::kSkipped}));
}

TEST(Sweep, DryRunWritesNothingAndAForeignDirectoryIsRefused) {
  SweepFixture f("dry", "grid:\n  train.lr: [1.0e-3]\n");
  SweepOptions opt;
  opt.dry_run = true;
  SweepReport rep = run_sweep(f.file(), opt);
  EXPECT_EQ(rep.points.size(), 1u);
  EXPECT_EQ(rep.states[0], PointState::kPending);
  EXPECT_FALSE(fs::exists(f.dir()));
  fs::create_directories(f.dir());
  write_file(f.dir() / "config.yaml", "");
  expect_user_error([&] { f.run(); }, {"not a sweep directory"});
}

// Every sweep file shipped under experiments/ (those with a grid) expands and passes the whole
// validation a sweep does before it trains: a typo in a paper file fails here, not on the GPU.
TEST(Sweep, ShippedSweepFilesValidate) {
  int checked = 0;
  for (const auto& entry :
       fs::recursive_directory_iterator(fs::path(KIMI_SOURCE_DIR) / "experiments")) {
    if (entry.path().extension() != ".yaml") continue;
    if (read_file(entry.path()).find("\ngrid:") == std::string::npos) continue;
    SCOPED_TRACE(entry.path().string());
    const SweepSpec spec = load_sweep_spec(entry.path().string());
    std::vector<SweepPoint> points = expand_grid(spec);
    EXPECT_FALSE(points.empty());
    try {
      validate_points(spec, points);
    } catch (const UserError& e) {
      // Language-model sweeps read prepared shards (`kimi-lab data prepare`), which a fresh
      // checkout lacks; their keys were checked before the data was looked for.
      const std::string what = e.what();
      EXPECT_NE(what.find("no manifest (prepare the data"), std::string::npos) << what;
    }
    ++checked;
  }
  EXPECT_GE(checked, 10);  // the paper's Figure 4, Table 1 and scaling files among them
}

}  // namespace
}  // namespace kimi
