// Sweeps (trainer/sweep.h) on a tiny MQAR model, 12 steps a run: grid order and run names,
// validation before anything runs, resume after an interrupted sweep, summary.csv columns, and
// detection of a changed sweep file.
#include "trainer/sweep.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "core/tensor/error.h"
#include "trainer/sweep_results.h"
#include "trainer/sweep_workers.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

const char* kTinyBase = R"(task: {name: mqar, vocab_size: 32, mqar: {num_kv_pairs: 2}}
model: {d_model: 16, num_heads: 2, head_dim: 8, kv_lora_rank: 8, mamba2: {d_state: 8}, chunk_size: 4}
train: {seq_len: 16, batch_size: 4, steps: 12, warmup_steps: 2, lr: 3.0e-3, log_every: 1,
        eval_every: 6, checkpoint_every: 6, threads: 1, device: cpu}
eval: {seq_lens: [16], num_examples: 8, batch_size: 8}
)";

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

// A fresh folder holding base.yaml and sweep.yaml (base + `body`), with out_dir inside it.
struct SweepFixture {
  fs::path root;
  explicit SweepFixture(const std::string& name, const std::string& body) {
    root = fs::temp_directory_path() / ("kimi_sweep_test_" + name);
    fs::remove_all(root);
    fs::create_directories(root);
    write_file(root / "base.yaml", kTinyBase);
    rewrite(body);
    spdlog::set_level(spdlog::level::warn);
  }
  void rewrite(const std::string& body) const {
    write_file(root / "sweep.yaml", fmt::format("base: base.yaml\nname: s\nout_dir: {}\n{}",
                                                (root / "out").string(), body));
  }
  std::string file() const { return (root / "sweep.yaml").string(); }
  fs::path dir() const { return root / "out" / "s"; }
  SweepReport run(std::vector<int> only = {}, bool force = false, int64_t stop_at = 0) const {
    SweepOptions opt;
    opt.only = std::move(only);
    opt.force = force;
    opt.stop_at = stop_at;
    opt.progress = false;
    return run_sweep(file(), opt);
  }
};

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

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

void expect_user_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << part << " in: " << msg;
  }
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

// Splits one CSV line (no quoted cells other than the run name's).
std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (char c : line) {
    if (c == '"')
      quoted = !quoted;
    else if (c == ',' && !quoted)
      out.emplace_back();
    else
      out.back() += c;
  }
  return out;
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

// ---- --jobs N: child processes (trainer/sweep_workers.h) --------------------------------------

// The summary without what legitimately differs between two sweep directories: wall time and
// the run's out_dir. Everything else -- losses, accuracies, group statistics -- must match.
std::vector<std::vector<std::string>> comparable_summary(const fs::path& dir) {
  const auto rows = lines(read_file(dir / "summary.csv"));
  const auto header = cells(rows.at(0));
  std::vector<std::vector<std::string>> out;
  for (const auto& row : rows) {
    const auto c = cells(row);
    std::vector<std::string> kept;
    for (size_t i = 0; i < c.size(); ++i)
      if (header[i] != "wall_s" && header[i] != "out_dir") kept.push_back(c[i]);
    out.push_back(kept);
  }
  return out;
}

// A worker command that records when each child starts and ends (in `stamps`) around the real
// kimi-lab, holding each child 0.5 s so that two children of --jobs 2 surely overlap.
std::vector<std::string> stamping_worker(const fs::path& stamps) {
  const std::string script = fmt::format(
      "echo start $(date +%s.%N) >> {0}/$$; sleep 0.5; {1} sweep --no-progress \"$@\"; rc=$?; "
      "echo end $(date +%s.%N) >> {0}/$$; exit $rc",
      stamps.string(), KIMI_LAB_BINARY);
  return {"/bin/sh", "-c", script, "worker"};
}

TEST(SweepJobs, TwoJobsTrainTwoPointsAtOnceAndSummariseAsOneJobDoes) {
  const std::string body = "grid:\n  model.mixer: [kda, gdn]\nseeds: [0, 1]\n";
  SweepFixture serial("jobs1", body), parallel("jobs2", body);
  SweepReport one = serial.run();
  ASSERT_TRUE(one.failures.empty());

  const fs::path stamps = parallel.root / "stamps";
  fs::create_directories(stamps);
  SweepOptions opt;
  opt.progress = false;
  opt.jobs = 2;
  opt.worker_command = stamping_worker(stamps);
  SweepReport two = run_sweep(parallel.file(), opt);
  ASSERT_TRUE(two.failures.empty()) << two.failures[0];
  for (auto a : two.actions) EXPECT_EQ(a, PointAction::kTrained);
  for (const auto& p : two.points) EXPECT_EQ(point_state(p), PointState::kDone) << p.name;

  // Intervals [start, end] of the four children: at some moment two of them ran together.
  std::vector<std::pair<double, double>> spans;
  for (const auto& e : fs::directory_iterator(stamps)) {
    std::istringstream in(read_file(e.path()));
    std::string word;
    double start = 0, end = 0;
    in >> word >> start >> word >> end;
    spans.emplace_back(start, end);
  }
  ASSERT_EQ(spans.size(), 4u);
  bool overlap = false;
  for (size_t i = 0; i < spans.size(); ++i)
    for (size_t j = i + 1; j < spans.size(); ++j)
      overlap = overlap || (spans[i].first < spans[j].second && spans[j].first < spans[i].second);
  EXPECT_TRUE(overlap);
  EXPECT_EQ(comparable_summary(parallel.dir()), comparable_summary(serial.dir()));
}

TEST(SweepJobs, APartlyFinishedSweepResumesAndAFailureStopsNoOtherPoint) {
  SweepFixture f("jobs_resume",
                 "grid:\n  train.lr: [1.0e-3, 1.0e+30, 2.0e-3]\n  train.grad_clip: [0]\n");
  SweepOptions opt;
  opt.progress = false;
  opt.jobs = 2;
  opt.worker_command = {KIMI_LAB_BINARY, "sweep", "--no-progress"};
  opt.stop_at = 6;  // every point checkpoints at step 6 and stops, as a killed sweep would
  SweepReport first = run_sweep(f.file(), opt);
  EXPECT_EQ(point_state(first.points[0]), PointState::kInterrupted);
  EXPECT_EQ(point_state(first.points[2]), PointState::kInterrupted);
  ASSERT_EQ(first.failures.size(), 1u);  // lr=1e30 diverges before step 6
  EXPECT_NE(first.failures[0].find("lr=1e+30"), std::string::npos) << first.failures[0];

  opt.stop_at = 0;
  SweepReport second = run_sweep(f.file(), opt);
  EXPECT_EQ(second.actions, (std::vector<PointAction>{PointAction::kResumed, PointAction::kSkipped,
                                                      PointAction::kResumed}));
  for (size_t i : {0u, 2u}) {
    EXPECT_EQ(point_state(second.points[i]), PointState::kDone);
    // Steps 1..6 from the first call and 7..12 from the resumed one, none twice.
    EXPECT_EQ(lines(read_file(fs::path(second.points[i].dir) / "metrics.csv")).size(), 13u);
  }
  EXPECT_EQ(point_state(second.points[1]), PointState::kFailed);
  EXPECT_EQ(lines(read_file(f.dir() / "summary.csv")).size(), 4u);
}

TEST(SweepJobs, CtrlCIsPassedToTheChildrenAndTheirPointsAreNotFailed) {
  SweepFixture f("jobs_signal", "grid:\n  model.mixer: [kda, gdn, mamba2]\n");
  const fs::path started = f.root / "started";
  fs::create_directories(started);
  SweepOptions opt;
  opt.progress = false;
  opt.jobs = 2;
  // Children that would train for a minute; each marks itself started first.
  opt.worker_command = {"/bin/sh", "-c", "touch " + started.string() + "/$$; exec sleep 60",
                        "worker"};
  std::thread interrupter([&] {
    for (int i = 0; i < 100 && std::distance(fs::directory_iterator(started), {}) < 2; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    kill(getpid(), SIGINT);
  });
  const auto t0 = std::chrono::steady_clock::now();
  SweepReport rep = run_sweep(f.file(), opt);
  interrupter.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  EXPECT_EQ(rep.interrupted_by, SIGINT);
  EXPECT_TRUE(rep.failures.empty());
  EXPECT_EQ(std::distance(fs::directory_iterator(started), {}), 2);  // the third never started
  for (const auto& p : rep.points) EXPECT_FALSE(fs::exists(fs::path(p.dir) / "failed.txt"));
}

TEST(SweepJobs, GpusAreHandedOutOnlyWhenSeveralAreVisibleAndTheUserSetNone) {
  using sweep_detail::gpus_to_hand_out;
  EXPECT_TRUE(gpus_to_hand_out(nullptr, 0).empty());
  EXPECT_TRUE(gpus_to_hand_out(nullptr, 1).empty());  // one GPU: every child shares it
  EXPECT_TRUE(gpus_to_hand_out("2,3", 8).empty());    // the user chose: children inherit it
  EXPECT_TRUE(gpus_to_hand_out("", 8).empty());
  EXPECT_EQ(gpus_to_hand_out(nullptr, 3), (std::vector<std::string>{"0", "1", "2"}));
}

// --mps: a fake nvidia-cuda-mps-control on PATH logs how it was called; the children must see
// the daemon's pipe folder, and the daemon must be told to quit when the sweep ends.
struct PathGuard {
  std::string old = std::getenv("PATH") ? std::getenv("PATH") : "";
  explicit PathGuard(const std::string& front) { setenv("PATH", (front + ":" + old).c_str(), 1); }
  ~PathGuard() { setenv("PATH", old.c_str(), 1); }
};

TEST(SweepJobs, MpsStartsAPrivateDaemonForTheChildrenAndStopsIt) {
  ASSERT_EQ(std::getenv("CUDA_MPS_PIPE_DIRECTORY"), nullptr);
  SweepFixture f("jobs_mps", "overrides: [train.device=auto]\ngrid:\n  model.mixer: [kda, gdn]\n");
  const fs::path bin = f.root / "bin", calls = f.root / "calls.txt", seen = f.root / "seen";
  fs::create_directories(bin);
  fs::create_directories(seen);
  write_file(
      bin / "nvidia-cuda-mps-control",
      fmt::format("#!/bin/sh\nif [ \"$1\" = -d ]; then echo \"start $CUDA_MPS_PIPE_DIRECTORY\" "
                  ">> {0}; else echo \"$(cat) $CUDA_MPS_PIPE_DIRECTORY\" >> {0}; fi\n",
                  calls.string()));
  fs::permissions(bin / "nvidia-cuda-mps-control", fs::perms::owner_all);
  const PathGuard path(bin.string());
  SweepOptions opt;
  opt.progress = false;
  opt.jobs = 2;
  opt.mps = true;
  opt.worker_command = {"/bin/sh", "-c", "echo $CUDA_MPS_PIPE_DIRECTORY > " + seen.string() + "/$$",
                        "worker"};
  run_sweep(f.file(), opt);

  const auto log = lines(read_file(calls));
  ASSERT_EQ(log.size(), 2u) << read_file(calls);
  ASSERT_EQ(log[0].rfind("start ", 0), 0u) << log[0];
  const std::string pipe = log[0].substr(6);
  EXPECT_EQ(log[1], "quit " + pipe);  // told to quit, through the same pipe folder
  EXPECT_EQ(pipe.rfind("/tmp/kimi-lab-mps-", 0), 0u) << pipe;
  size_t children = 0;
  for (const auto& e : fs::directory_iterator(seen)) {
    EXPECT_EQ(lines(read_file(e.path())).at(0), pipe);
    ++children;
  }
  EXPECT_EQ(children, 2u);
  EXPECT_EQ(std::getenv("CUDA_MPS_PIPE_DIRECTORY"), nullptr);  // restored
  EXPECT_FALSE(fs::exists(fs::path(pipe).parent_path()));      // its folder removed
}

TEST(SweepJobs, MpsIsRefusedWithOneJobOnTheCpuOrWithoutItsControlProgram) {
  SweepFixture f("jobs_mps_bad", "grid:\n  model.mixer: [kda, gdn]\n");
  SweepOptions opt;
  opt.progress = false;
  opt.mps = true;
  opt.worker_command = {"/bin/true"};
  auto message = [&] {
    try {
      run_sweep(f.file(), opt);
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message().find("--jobs 2 or more"), std::string::npos);
  opt.jobs = 2;  // and the fixture's points run on the CPU
  EXPECT_NE(message().find("every point runs on the CPU"), std::string::npos);
  opt.device = "auto";
  const fs::path empty = f.root / "empty";
  fs::create_directories(empty);
  const std::string old = std::getenv("PATH") ? std::getenv("PATH") : "";
  setenv("PATH", empty.c_str(), 1);  // no nvidia-cuda-mps-control anywhere
  const std::string missing = message();
  setenv("PATH", old.c_str(), 1);
  EXPECT_NE(missing.find("cannot run nvidia-cuda-mps-control"), std::string::npos) << missing;
  EXPECT_EQ(std::getenv("CUDA_MPS_PIPE_DIRECTORY"), nullptr);
}

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

}  // namespace
}  // namespace kimi
