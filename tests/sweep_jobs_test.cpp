// sweep --jobs N (trainer/sweep_workers.h): child processes training points at once, resume and
// failures among them, Ctrl-C passed on, GPUs handed out, and the MPS daemon of --mps.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "tests/sweep_fixture.h"
#include "trainer/sweep_results.h"
#include "trainer/sweep_workers.h"

namespace kimi {
namespace {

using namespace sweep_test;  // NOLINT: the fixture and readers of tests/sweep_fixture.h

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

}  // namespace
}  // namespace kimi
