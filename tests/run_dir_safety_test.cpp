// Issue 15 (part A): what keeps a run directory's contents trustworthy: checksummed checkpoints
// stamped with the run id, keep_checkpoints, temp-file cleanup, the directory lock, and resume
// overrides that are either refused or recorded.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/io/atomic_file.h"
#include "trainer/dir_lock.h"
#include "trainer/run_dir.h"
#include "trainer/trainer.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> tiny(std::vector<std::string> extra = {}) {
  std::vector<std::string> o = {"task.name=mqar",           "task.vocab_size=32",
                                "task.mqar.num_kv_pairs=2", "model.d_model=16",
                                "model.num_heads=2",        "model.head_dim=8",
                                "model.kv_lora_rank=8",     "model.mixer=kda",
                                "model.chunk_size=4",       "train.seq_len=16",
                                "train.batch_size=4",       "train.steps=12",
                                "train.warmup_steps=2",     "train.lr=3e-3",
                                "train.log_every=1",        "train.eval_every=6",
                                "train.checkpoint_every=6", "train.threads=1",
                                "train.device=cpu",         "eval.seq_lens=[16]",
                                "eval.num_examples=8",      "eval.batch_size=8"};
  o.insert(o.end(), extra.begin(), extra.end());
  return o;
}

std::string fresh(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("kimi_run_dir_safety_" + name);
  fs::remove_all(d);
  return d.string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

RunResult train(const std::string& dir, std::vector<std::string> overrides, int64_t stop_at = 0,
                bool resume = false) {
  RunRequest req;
  req.overrides = std::move(overrides);
  req.progress = false;
  req.stop_at = stop_at;
  (resume ? req.resume_dir : req.out_dir) = dir;
  return run_training(req);
}

// The message of the UserError that `f` throws ("" and a test failure when none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no UserError";
  return "";
}

TEST(RunDirSafety, AFlippedBitInACheckpointIsRefusedNamingTheFile) {
  const std::string dir = fresh("flip");
  train(dir, tiny(), /*stop_at=*/6);
  const std::string ckpt = checkpoint_path(dir, 6);
  std::string bytes = slurp(ckpt);
  bytes[bytes.size() - 5] ^= 0x10;  // in the last tensor's data, not the header
  std::ofstream(ckpt, std::ios::binary) << bytes;
  const std::string msg = error_of([&] { train(dir, {}, 0, true); });
  EXPECT_NE(msg.find(ckpt), std::string::npos) << msg;
  EXPECT_NE(msg.find("checksum"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(RunDirSafety, AnotherRunsCheckpointIsRefused) {
  const std::string a = fresh("id_a"), b = fresh("id_b");
  train(a, tiny(), 6);
  train(b, tiny(), 6);
  fs::copy_file(checkpoint_path(a, 6), checkpoint_path(b, 6), fs::copy_options::overwrite_existing);
  const std::string msg = error_of([&] { train(b, {}, 0, true); });
  EXPECT_NE(msg.find("another run"), std::string::npos) << msg;
  EXPECT_NE(msg.find(checkpoint_path(b, 6)), std::string::npos) << msg;
}

TEST(RunDirSafety, OutOntoAnExistingRunIsRefusedAndTouchesNothing) {
  const std::string dir = fresh("out_taken");
  train(dir, tiny(), 6);
  const std::string config = slurp(dir + "/config.yaml"), run = slurp(dir + "/run.json");
  const std::string msg = error_of([&] { train(dir, tiny()); });
  EXPECT_NE(msg.find("--resume"), std::string::npos) << msg;
  EXPECT_EQ(slurp(dir + "/config.yaml"), config);
  EXPECT_EQ(slurp(dir + "/run.json"), run);
}

TEST(RunDirSafety, OnlyTheLastKeepCheckpointsStay) {
  const std::string dir = fresh("keep");
  train(dir, tiny({"train.checkpoint_every=2", "train.keep_checkpoints=2"}));
  std::vector<int64_t> steps;
  for (const auto& c : list_checkpoints(dir)) steps.push_back(c.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{10, 12}));
  const std::string msg =
      error_of([&] { train(fresh("keep0"), tiny({"train.keep_checkpoints=0"})); });
  EXPECT_NE(msg.find("train.keep_checkpoints"), std::string::npos) << msg;
}

TEST(RunDirSafety, TempFilesOfAKilledWriterGoWhenTheRunResumes) {
  const std::string dir = fresh("temps");
  train(dir, tiny(), 6);
  for (const char* f :
       {".ckpt_step12.safetensors.tmp.aB3xYz", ".metrics.csv.tmp.4242.7", "notes.tmp"})
    std::ofstream(dir + "/" + f) << "half";
  EXPECT_TRUE(io::is_atomic_temp_name(".config.yaml.tmp.1.2"));
  EXPECT_FALSE(io::is_atomic_temp_name("notes.tmp"));
  train(dir, {}, 0, true);
  EXPECT_FALSE(fs::exists(dir + "/.ckpt_step12.safetensors.tmp.aB3xYz"));
  EXPECT_FALSE(fs::exists(dir + "/.metrics.csv.tmp.4242.7"));
  EXPECT_TRUE(fs::exists(dir + "/notes.tmp"));  // not ours: kept
}

TEST(RunDirSafety, ALockedRunDirectoryIsRefusedNamingThePid) {
  const std::string dir = fresh("locked");
  train(dir, tiny(), 6);
  const std::string metrics = slurp(dir + "/metrics.csv");
  // flock conflicts between two open files even inside one process: this stands in for a
  // second kimi-lab process.
  DirLock held = lock_run_dir(dir);
  const std::string msg = error_of([&] { train(dir, {}, 0, true); });
  EXPECT_EQ(msg,
            fmt::format("run directory {} is in use by another process (pid {})", dir, ::getpid()));
  EXPECT_THROW(train(dir, tiny()), RunDirUnavailable);
  EXPECT_EQ(slurp(dir + "/metrics.csv"), metrics);
}

TEST(RunDirSafety, ResumeRefusesShapeChangingOverridesNamingTheKey) {
  const std::string dir = fresh("refuse");
  train(dir, tiny(), 6);
  const std::string config = slurp(dir + "/config.yaml");
  for (const char* o : {"model.d_model=32", "task.vocab_size=64", "train.lr=1e-3",
                        "train.schedule=linear", "train.schedule_steps=20"}) {
    const std::string msg = error_of([&] { train(dir, {o}, 0, true); });
    const std::string key = std::string(o).substr(0, std::string(o).find('='));
    EXPECT_EQ(msg.rfind(key + ": cannot change on resume", 0), 0u) << msg;
  }
  EXPECT_EQ(slurp(dir + "/config.yaml"), config);
}

// Extending train.steps: config.yaml and overrides.txt record it, and no step's learning rate
// changes: the decay keeps the old horizon (train.schedule_steps) and the new steps train at
// min_lr. So the extended run equals a fresh run with those two keys, bit for bit.
TEST(RunDirSafety, ExtendingTrainStepsIsRecordedAndTheScheduleDoesNotJump) {
  const std::string dir = fresh("extend"), ref = fresh("extend_ref");
  train(dir, tiny(), 6);
  train(dir, {"train.steps=16"}, 0, true);
  EXPECT_NE(slurp(dir + "/config.yaml").find("schedule_steps: 12"), std::string::npos);
  const std::string overrides = slurp(dir + "/overrides.txt");
  EXPECT_NE(overrides.find("train.steps=16\ntrain.schedule_steps=12\n"), std::string::npos)
      << overrides;
  train(ref, tiny({"train.steps=16", "train.schedule_steps=12"}));
  EXPECT_EQ(slurp(dir + "/eval.csv"), slurp(ref + "/eval.csv"));
  // lr column: steps 13..16 at min_lr = 3e-3 * 0.1.
  std::ifstream in(dir + "/metrics.csv");
  std::string line;
  std::getline(in, line);
  int64_t rows = 0;
  while (std::getline(in, line)) {
    const size_t a = line.find(',', line.find(',') + 1), b = line.find(',', a + 1);
    const int64_t step = std::stoll(line.substr(0, line.find(',')));
    const double lr = std::stod(line.substr(a + 1, b - a - 1));
    if (step > 12) EXPECT_NEAR(lr, 3e-4, 1e-12) << step;
    ++rows;
  }
  EXPECT_EQ(rows, 16);
  const std::string msg = error_of([&] { train(dir, {"train.steps=4"}, 0, true); });
  EXPECT_NE(msg.find("train.steps"), std::string::npos) << msg;
}

// A failure mid-run (here a diverging loss) goes to status.json and log.txt as well.
TEST(RunDirSafety, AFailureMidRunIsInStatusJsonAndTheLog) {
  const std::string dir = fresh("failed");
  const std::string msg = error_of([&] {
    train(dir, tiny({"train.lr=1e30", "train.grad_clip=0", "train.warmup_steps=0"}));
  });
  EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
  const nlohmann::json status = nlohmann::json::parse(slurp(dir + "/status.json"));
  EXPECT_EQ(status["state"], "failed");
  EXPECT_EQ(status["reason"], msg);
  EXPECT_NE(slurp(dir + "/log.txt").find(msg), std::string::npos);
}

}  // namespace
}  // namespace kimi
