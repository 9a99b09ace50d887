// `kimi-lab run --ranks 2` (issue 14): the real binary as two data-parallel processes over TCP
// trains the same numbers as one process (metrics.csv and eval.csv within 1e-5), rank 0 alone
// writes (no second run directory anywhere), it resumes on 2 ranks to the same numbers, one rank
// through the data-parallel path trains a plain run's numbers, and GPU ranks that cannot meet
// through NCCL are refused in one line instead of training on one GPU.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace kimi {
namespace {

namespace fs = std::filesystem;

// Runs `kimi-lab ARGS` in cwd with `env` (NAME=value ...) prepended; returns the exit status
// (-1 on a signal) and leaves stderr in cwd/stderr.txt.
int run_cli(const std::string& args, const fs::path& cwd, const std::string& env = "") {
  const std::string cmd = "cd '" + cwd.string() + "' && env " + env + " timeout 240 '" +
                          std::string(KIMI_LAB_BINARY) + "' " + args +
                          " > stdout.txt 2> stderr.txt";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::vector<std::string>> read_csv(const fs::path& path) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    rows.push_back(cells);
  }
  return rows;
}

// Every cell of the named columns of two CSVs: equal text, or numbers within 1e-5.
void expect_same_columns(const fs::path& a, const fs::path& b,
                         const std::vector<std::string>& columns) {
  const auto ra = read_csv(a), rb = read_csv(b);
  ASSERT_GE(ra.size(), 2u) << a;
  ASSERT_EQ(ra.size(), rb.size()) << a << " vs " << b;
  ASSERT_EQ(ra[0], rb[0]);
  for (const auto& name : columns) {
    size_t col = 0;
    while (col < ra[0].size() && ra[0][col] != name) ++col;
    ASSERT_LT(col, ra[0].size()) << name << " not in " << a;
    for (size_t r = 1; r < ra.size(); ++r) {
      const std::string &x = ra[r][col], &y = rb[r][col];
      char* end = nullptr;
      const double dx = std::strtod(x.c_str(), &end);
      if (end == x.c_str()) {
        EXPECT_EQ(x, y) << name << " row " << r;
      } else {
        EXPECT_NEAR(dx, std::strtod(y.c_str(), nullptr), 1e-5) << name << " row " << r;
      }
    }
  }
}

class DataParallelRun : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("kimi_dp_run_" + std::to_string(getpid()));
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  // A tiny quickstart: 4 steps of 4 rows (2 a rank), evaluated at steps 2 and 4.
  static std::string tiny(const std::string& extra) {
    return std::string(KIMI_EXPERIMENTS_DIR) +
           "/quickstart.yaml train.steps=4 train.eval_every=2 train.log_every=1 "
           "train.checkpoint_every=2 model.d_model=16 model.head_dim=8 train.batch_size=4 "
           "eval.num_examples=8 train.target_accuracy=0 train.threads=1 --device cpu "
           "--no-plot --no-progress --no-estimate " +
           extra;
  }
  fs::path tmp_;
};

TEST_F(DataParallelRun, TwoRanksTrainLikeOneAndOnlyRankZeroWrites) {
  ASSERT_EQ(run_cli("run " + tiny("--out one"), tmp_), 0) << slurp(tmp_ / "stderr.txt");
  ASSERT_EQ(run_cli("run " + tiny("--out two --ranks 2"), tmp_), 0) << slurp(tmp_ / "stderr.txt");
  expect_same_columns(tmp_ / "one/metrics.csv", tmp_ / "two/metrics.csv",
                      {"step", "loss", "lr", "grad_norm", "tokens"});
  expect_same_columns(tmp_ / "one/eval.csv", tmp_ / "two/eval.csv",
                      {"step", "loss", "accuracy", "exact_match"});
  // Rank 1 wrote nothing: no default run directory (runs/...) or other file beside ours.
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(tmp_)) entries.push_back(e.path().filename());
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries, (std::vector<std::string>{"one", "stderr.txt", "stdout.txt", "two"}));
  EXPECT_TRUE(fs::exists(tmp_ / "two/summary.json"));
  EXPECT_TRUE(fs::exists(tmp_ / "two/ckpt_step4.safetensors"));

  // Stopped at step 2 and resumed, both on 2 ranks: the same numbers as the unbroken runs.
  ASSERT_EQ(run_cli("run " + tiny("--out three --ranks 2 --stop-at 2"), tmp_), 0)
      << slurp(tmp_ / "stderr.txt");
  ASSERT_EQ(run_cli("run --resume three --ranks 2 --no-plot --no-progress --no-estimate", tmp_), 0)
      << slurp(tmp_ / "stderr.txt");
  expect_same_columns(tmp_ / "one/metrics.csv", tmp_ / "three/metrics.csv",
                      {"step", "loss", "lr", "grad_norm"});
  expect_same_columns(tmp_ / "one/eval.csv", tmp_ / "three/eval.csv", {"step", "loss", "accuracy"});
}

// The data-parallel path of one rank (what `run --gpus 1` takes on a GPU, here over TCP: the
// same step code, gradient sums, ZeRO-1 and rank-0 writes) trains the numbers of a plain run.
TEST_F(DataParallelRun, OneRankThroughTheDataParallelPathTrainsLikeAPlainRun) {
  ASSERT_EQ(run_cli("run " + tiny("--out one"), tmp_), 0) << slurp(tmp_ / "stderr.txt");
  ASSERT_EQ(run_cli("run " + tiny("--out dp1"), tmp_, "KIMI_DIST_BACKEND=tcp"), 0)
      << slurp(tmp_ / "stderr.txt");
  expect_same_columns(tmp_ / "one/metrics.csv", tmp_ / "dp1/metrics.csv",
                      {"step", "loss", "lr", "grad_norm", "tokens"});
  expect_same_columns(tmp_ / "one/eval.csv", tmp_ / "dp1/eval.csv", {"step", "loss", "accuracy"});
}

// Ranks on GPUs meet through NCCL: --ranks with cuda points to --gpus, a bad backend and a
// device that contradicts it are one line each, and a build without NCCL says so in one line.
TEST_F(DataParallelRun, MismatchedDevicesAndBackendsAreRefusedInOneLine) {
  const std::string quick =
      std::string(KIMI_EXPERIMENTS_DIR) + "/quickstart.yaml --no-estimate --out x ";
  const struct {
    std::string args, env, says;
  } cases[] = {
      {"--device cuda --ranks 2", "", "for GPUs give --gpus N"},
      {"--device cpu --gpus 2", "", "--device cpu contradicts it"},
      {"--ranks 2 --gpus 2", "", "not both"},
      {"--device cpu", "KIMI_DIST_BACKEND=mpi", "KIMI_DIST_BACKEND='mpi'"},
      // CPU builds: "this build has no NCCL"; CUDA builds: libnccl.so.2 or the GPU is missing.
      {"--device cuda", "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29999", "nccl"},
  };
  for (const auto& c : cases) {
    EXPECT_NE(run_cli("run " + quick + c.args, tmp_, c.env), 0) << c.args;
    const std::string err = slurp(tmp_ / "stderr.txt");
    EXPECT_NE(err.find(c.says), std::string::npos) << c.args << ": " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << c.args << ": " << err;
    EXPECT_FALSE(fs::exists(tmp_ / "x")) << c.args;
  }
}

// MoE with the auxiliary-loss-free bias update: the loads are summed over the ranks before
// each update, so 2 ranks log the loads (moe_load.csv) and numbers of 1; the load-balance loss
// (per rank's rows, not the global batch) is refused in one line.
TEST_F(DataParallelRun, MoeTrainsLikeOneRankAndItsBalanceLossIsRefused) {
  const std::string moe =
      "model.mlp=true model.moe.num_experts=4 model.moe.top_k=2 model.moe.expert_hidden=8 "
      "model.moe.bias_update_rate=0.05 ";
  ASSERT_EQ(run_cli("run " + tiny(moe + "--out one"), tmp_), 0) << slurp(tmp_ / "stderr.txt");
  ASSERT_EQ(run_cli("run " + tiny(moe + "--out two --ranks 2"), tmp_), 0)
      << slurp(tmp_ / "stderr.txt");
  expect_same_columns(tmp_ / "one/metrics.csv", tmp_ / "two/metrics.csv",
                      {"step", "loss", "grad_norm"});
  expect_same_columns(tmp_ / "one/moe_load.csv", tmp_ / "two/moe_load.csv",
                      {"step", "layer", "expert", "load"});
  EXPECT_NE(run_cli("run " + tiny(moe + "model.moe.aux_loss_coef=0.01 --out aux --ranks 2"), tmp_),
            0);
  const std::string err = slurp(tmp_ / "stderr.txt");
  EXPECT_NE(err.find("model.moe.aux_loss_coef > 0 with several ranks"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(tmp_ / "aux"));
}

TEST_F(DataParallelRun, BatchThatDoesNotDivideIsRefused) {
  EXPECT_NE(run_cli("run " + tiny("--out odd --ranks 2 train.batch_size=3"), tmp_), 0);
  EXPECT_NE(slurp(tmp_ / "stderr.txt").find("train.batch_size 3 does not divide by the 2 ranks"),
            std::string::npos)
      << slurp(tmp_ / "stderr.txt");
}

}  // namespace
}  // namespace kimi
