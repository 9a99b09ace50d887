// End-to-end trainer checks on a tiny MQAR model: every mixer trains, a resumed run equals an
// uninterrupted one bit for bit, the CSVs have the documented columns, and a diverging run
// stops with a clear message while its last good checkpoint stays.
#include "trainer/trainer.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "core/io/tensor_io.h"
#include "core/tensor/device_memory.h"
#include "trainer/checkpoint.h"
#include "trainer/run_dir.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> tiny_overrides(const std::string& mixer) {
  return {"task.name=mqar",       "task.vocab_size=32",     "task.mqar.num_kv_pairs=2",
          "model.d_model=16",     "model.num_heads=2",      "model.head_dim=8",
          "model.kv_lora_rank=8", "model.mamba2.d_state=8", "model.mixer=" + mixer,
          "model.chunk_size=4",   "train.seq_len=16",       "train.batch_size=4",
          "train.steps=12",       "train.warmup_steps=2",   "train.lr=3e-3",
          "train.log_every=1",    "train.eval_every=6",     "train.checkpoint_every=6",
          "train.threads=1",      "train.device=cpu",       "eval.seq_lens=[16]",
          "eval.num_examples=8",  "eval.batch_size=8"};
}

std::string fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("kimi_trainer_test_" + name);
  fs::remove_all(d);
  return d.string();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// metrics.csv without its timing columns (tokens_per_s, ms_per_step, wall_s vary run to run).
std::vector<std::string> deterministic_metrics(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) {
    size_t cut = 0;
    for (int commas = 0; commas < 4 && cut != std::string::npos; ++commas)
      cut = line.find(',', cut + 1);
    rows.push_back(line.substr(0, cut));
  }
  return rows;
}

// Column `col` of every data row of a CSV, as numbers.
std::vector<double> csv_column(const std::string& path, int col) {
  std::ifstream in(path);
  std::vector<double> out;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    size_t start = 0;
    for (int c = 0; c < col; ++c) start = line.find(',', start) + 1;
    out.push_back(std::stod(line.substr(start, line.find(',', start) - start)));
  }
  return out;
}

RunResult train(const std::string& dir, std::vector<std::string> overrides, int64_t stop_at = 0,
                bool resume = false) {
  RunRequest req;
  req.overrides = std::move(overrides);
  req.progress = false;
  req.stop_at = stop_at;
  if (resume)
    req.resume_dir = dir;
  else
    req.out_dir = dir;
  spdlog::set_level(spdlog::level::warn);
  return run_training(req);
}

class TrainerMixers : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainerMixers, TrainsAFewStepsAndTheLossFalls) {
  std::string dir = fresh_dir("mixer_" + GetParam());
  std::vector<std::string> o = tiny_overrides(GetParam());
  o.insert(o.end(),
           {"train.steps=40", "train.lr=1e-2", "train.eval_every=0", "train.checkpoint_every=0"});
  RunResult r = train(dir, o);
  EXPECT_EQ(r.steps_done, 40);
  std::vector<double> loss = csv_column(dir + "/metrics.csv", 1);
  ASSERT_EQ(loss.size(), 40u);
  const double first = (loss[0] + loss[1] + loss[2]) / 3,
               last = (loss[37] + loss[38] + loss[39]) / 3;
  EXPECT_TRUE(std::isfinite(last));
  EXPECT_LT(last, first) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Every, TrainerMixers,
                         ::testing::Values("kda", "gdn", "deltanet", "mamba2", "attention", "mla",
                                           "[kda,attention]"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(Trainer, ResumeGivesTheSameNumbersAsAnUninterruptedRun) {
  std::string a = fresh_dir("whole"), b = fresh_dir("split");
  train(a, tiny_overrides("kda"));
  train(b, tiny_overrides("kda"), /*stop_at=*/6);
  ASSERT_TRUE(find_latest_checkpoint(b).has_value());
  EXPECT_EQ(find_latest_checkpoint(b)->step, 6);
  train(b, {}, 0, /*resume=*/true);
  EXPECT_EQ(deterministic_metrics(a + "/metrics.csv"), deterministic_metrics(b + "/metrics.csv"));
  EXPECT_EQ(read_file(a + "/eval.csv"), read_file(b + "/eval.csv"));
  auto pa = io::load_tensors(checkpoint_path(a, 12)), pb = io::load_tensors(checkpoint_path(b, 12));
  ASSERT_EQ(pa.size(), pb.size());
  for (auto& [name, t] : pa)
    EXPECT_EQ(t.to_vector<float>(), pb.at(name).to_vector<float>()) << name;
}

// A run directory copied without its checkpoints (GPU slices carry only the CSVs between
// machines) resumes from step 0 with one warning in its log, and ends with the numbers of an
// uninterrupted run: the rows logged before are replaced, not duplicated.
TEST(Trainer, ResumeWithoutACheckpointRetrainsFromStepZeroAndSaysSo) {
  std::string a = fresh_dir("whole_s0"), b = fresh_dir("no_ckpt");
  train(a, tiny_overrides("kda"));
  train(b, tiny_overrides("kda"), /*stop_at=*/6);
  for (const auto& e : std::filesystem::directory_iterator(b))
    if (e.path().extension() == ".safetensors") std::filesystem::remove(e.path());
  ASSERT_FALSE(find_latest_checkpoint(b).has_value());
  EXPECT_EQ(train(b, {}, 0, /*resume=*/true).steps_done, 12);
  EXPECT_EQ(deterministic_metrics(a + "/metrics.csv"), deterministic_metrics(b + "/metrics.csv"));
  EXPECT_EQ(read_file(a + "/eval.csv"), read_file(b + "/eval.csv"));
  EXPECT_NE(read_file(b + "/log.txt").find("holds no checkpoint; training from step 0"),
            std::string::npos);
}

TEST(Trainer, WritesTheDocumentedFiles) {
  std::string dir = fresh_dir("files");
  std::vector<std::string> o = tiny_overrides("kda");
  o.push_back("train.keep_checkpoints=1");
  train(dir, o);
  for (const char* f : {"run.json", "config.yaml", "overrides.txt", "metrics.csv", "eval.csv",
                        "summary.json", "status.json", "log.txt"})
    EXPECT_TRUE(fs::exists(fs::path(dir) / f)) << f;
  std::string metrics = read_file(dir + "/metrics.csv");
  EXPECT_EQ(metrics.substr(0, metrics.find('\n')),
            "step,loss,lr,grad_norm,tokens_per_s,ms_per_step,wall_s,tokens,flops,moe_max_load");
  std::string eval = read_file(dir + "/eval.csv");
  EXPECT_EQ(eval.substr(0, eval.find('\n')),
            "step,task,seq_len,num_kv_pairs,num_examples,loss,accuracy,exact_match,perplexity,"
            "bits_per_byte");
  EXPECT_EQ(std::count(eval.begin(), eval.end(), '\n'), 3);  // header + evals at steps 6 and 12
  EXPECT_TRUE(fs::exists(checkpoint_path(dir, 12)));
  EXPECT_FALSE(fs::exists(checkpoint_path(dir, 6)));  // beyond train.keep_checkpoints: removed
}

TEST(Trainer, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  std::string dir = fresh_dir("nan");
  std::vector<std::string> o = tiny_overrides("kda");
  o.push_back("train.lr=1e30");
  o.push_back("train.grad_clip=0");
  o.push_back("train.warmup_steps=0");
  o.push_back("train.checkpoint_every=1");
  o.push_back("train.eval_every=0");
  try {
    train(dir, o);
    FAIL() << "expected the run to stop";
  } catch (const UserError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("non-finite"), std::string::npos) << msg;
    EXPECT_NE(msg.find("at step"), std::string::npos) << msg;
    auto ckpt = find_latest_checkpoint(dir);
    ASSERT_TRUE(ckpt.has_value());
    EXPECT_NE(msg.find(ckpt->path), std::string::npos) << msg;
    for (auto& [name, t] : io::load_tensors(ckpt->path))
      for (float v : t.to_vector<float>()) ASSERT_TRUE(std::isfinite(v)) << name;
  }
}

TEST(Trainer, ANewRunNeverWritesOverAnEarlierOne) {
  std::string root = fresh_dir("numbered");
  std::vector<std::string> o = tiny_overrides("kda");
  o.insert(o.end(), {"out_dir=" + root, "name=same", "train.steps=2"});
  RunRequest req;
  req.overrides = o;
  req.progress = false;
  EXPECT_EQ(run_training(req).run_dir, root + "/same");
  EXPECT_EQ(run_training(req).run_dir, root + "/same-2");
  EXPECT_TRUE(fs::exists(checkpoint_path(root + "/same", 2)));
}

TEST(Trainer, ResumeOfANonRunDirectoryIsAClearError) {
  std::string dir = fresh_dir("not_a_run");
  fs::create_directories(dir);
  try {
    train(dir, {}, 0, true);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("config.yaml"), std::string::npos);
  }
}

// Issue 15: a checkpoint whose metadata step is not wholly an integer in [0, train.steps] is
// refused on resume (before "1x0" resumed at step 1, "999" trained nothing and rewrote the
// summary), naming the file and the key, and nothing in the run directory changes.
TEST(Trainer, ResumeRefusesABadStepInTheCheckpoint) {
  std::string dir = fresh_dir("bad_step");
  train(dir, tiny_overrides("kda"), /*stop_at=*/6);
  const std::string ckpt = checkpoint_path(dir, 6);
  const auto tensors = io::load_tensors(ckpt);
  const std::string summary = read_file(dir + "/summary.json");
  const std::string metrics = read_file(dir + "/metrics.csv");
  for (const char* bad : {"1x0", "999", "-1", "13"}) {
    io::save_tensors(ckpt, tensors, {{"step", bad}, {"format", "kimi-lab checkpoint v1"}});
    try {
      train(dir, {}, 0, /*resume=*/true);
      FAIL() << "step '" << bad << "' accepted";
    } catch (const UserError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(ckpt), std::string::npos) << msg;
      EXPECT_NE(msg.find("'step'"), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
    EXPECT_EQ(read_file(dir + "/summary.json"), summary) << bad;
    EXPECT_EQ(read_file(dir + "/metrics.csv"), metrics) << bad;
  }
}

// Issue 15: a checkpoint holding a NaN/inf is refused on resume, naming the file and tensor.
TEST(Trainer, ResumeRefusesANonFiniteCheckpoint) {
  std::string dir = fresh_dir("inf_ckpt");
  train(dir, tiny_overrides("kda"), /*stop_at=*/6);
  const std::string ckpt = checkpoint_path(dir, 6);
  auto tensors = io::load_tensors(ckpt);
  const std::string name = tensors.begin()->first;
  std::vector<float> v = tensors.at(name).to_vector<float>();
  v[0] = std::numeric_limits<float>::infinity();
  tensors[name] = Tensor::from_vector(v, tensors.at(name).shape());
  // The checkpoint's own metadata with a checksum that matches: only the value is wrong.
  auto meta = io::SafetensorsFile::open(ckpt).metadata();
  meta["crc32"] = checkpoint_checksum(tensors);
  io::save_tensors(ckpt, tensors, meta);
  try {
    train(dir, {}, 0, /*resume=*/true);
    FAIL() << "a non-finite checkpoint was accepted";
  } catch (const UserError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(ckpt), std::string::npos) << msg;
    EXPECT_NE(msg.find("'" + name + "'"), std::string::npos) << msg;
  }
}

// Issue 15: resuming a finished run is one clear line and writes nothing (before, it rewrote
// summary.json with eval [] and final_loss 0).
TEST(Trainer, ResumeOfAFinishedRunIsRefusedAndWritesNothing) {
  std::string dir = fresh_dir("finished");
  train(dir, tiny_overrides("kda"));
  std::string summary = read_file(dir + "/summary.json");
  const std::string metrics = read_file(dir + "/metrics.csv");
  std::string log = read_file(dir + "/log.txt");
  const auto check = [&] {
    try {
      train(dir, {}, 0, /*resume=*/true);
      FAIL() << "a finished run was resumed";
    } catch (const UserError& e) {
      EXPECT_EQ(std::string(e.what()), dir + ": the run finished at step 12; nothing to resume");
    }
    EXPECT_EQ(read_file(dir + "/summary.json"), summary);
    EXPECT_EQ(read_file(dir + "/metrics.csv"), metrics);
    EXPECT_EQ(read_file(dir + "/log.txt"), log);
  };
  check();
  // Killed after its last checkpoint but before summary.json: resuming writes the same summary
  // without training further (the eval of the saved model gives the same numbers).
  const nlohmann::json before = nlohmann::json::parse(summary);
  fs::remove(dir + "/summary.json");
  EXPECT_EQ(train(dir, {}, 0, /*resume=*/true).steps_done, 12);
  const nlohmann::json after = nlohmann::json::parse(read_file(dir + "/summary.json"));
  for (const char* key : {"steps_done", "final_loss", "stopped_early", "eval", "config"})
    EXPECT_EQ(after[key], before[key]) << key;
  EXPECT_EQ(read_file(dir + "/metrics.csv"), metrics);
  summary = read_file(dir + "/summary.json");
  log = read_file(dir + "/log.txt");
  check();
  // Raising train.steps continues it.
  EXPECT_EQ(train(dir, {"train.steps=14"}, 0, /*resume=*/true).steps_done, 14);
}

}  // namespace
}  // namespace kimi

// Without a GPU (or without -DKIMI_LAB_CUDA=ON): cuda is one clear line, auto falls back.
TEST(Trainer, DeviceCudaWithoutAGpuIsAClearError) {
  if (kimi::cuda_available()) GTEST_SKIP() << "a GPU is present";
  EXPECT_EQ(kimi::resolve_device("auto"), kimi::Device::kCPU);
  EXPECT_EQ(kimi::resolve_device("cpu"), kimi::Device::kCPU);
  try {
    kimi::resolve_device("cuda");
    FAIL() << "cuda accepted without a GPU";
  } catch (const kimi::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
  }
  EXPECT_THROW(kimi::resolve_device("tpu"), kimi::UserError);
}
