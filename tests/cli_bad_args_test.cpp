// The built kimi-lab binary, run as a user would, over bad arguments for every subcommand (zero,
// negative, huge, wrong kind, missing file, unknown flag): each must exit with status 2 and
// exactly one line on stderr, never a signal, and write no run directory. Then the eval paths
// that read data made elsewhere (out-of-range ids, empty slices) and the ones that work
// (eval --seq-lens, --ckpt), and the warning before a GPU-sized run on the CPU.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/tensor/rng.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

struct CliResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out, err;
  int stderr_lines() const {
    int n = 0;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);) n += !line.empty();
    return n;
  }
};

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs kimi-lab with args in cwd; a child alive after timeout_s is killed by SIGALRM (reported
// as a signal). With stop_when set, the child is killed as soon as its stderr holds that text.
CliResult run_cli(const std::vector<std::string>& args, const fs::path& cwd,
                  unsigned timeout_s = 60, const std::string& stop_when = "") {
  const fs::path out_file = cwd / ".cli_stdout";
  int err_pipe[2];
  if (pipe(err_pipe) != 0) throw std::runtime_error("pipe");
  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(cwd.c_str()) != 0) _exit(127);
    const int out_fd = open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    close(err_pipe[0]);
    close(err_pipe[1]);
    alarm(timeout_s);
    std::vector<char*> argv;
    std::string bin = KIMI_LAB_BINARY;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  close(err_pipe[1]);
  CliResult r;
  char buf[4096];
  for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) > 0;) {
    r.err.append(buf, static_cast<size_t>(n));
    if (!stop_when.empty() && r.err.find(stop_when) != std::string::npos) {
      kill(pid, SIGKILL);
      break;
    }
  }
  close(err_pipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = slurp(out_file);
  return r;
}

std::string show(const std::vector<std::string>& args) {
  std::string s = "kimi-lab";
  for (const auto& a : args) s += " " + a;
  return s;
}

// One eval slice in a safetensors file: `<name>.inputs` / `<name>.labels`, I64 [rows, T].
void write_slice(const fs::path& path, const std::string& name, int64_t rows, int64_t T,
                 const std::vector<int64_t>& inputs, const std::vector<int64_t>& labels) {
  io::write_safetensors(path.string(), {{name + ".inputs", DType::kI64, {rows, T}, inputs.data()},
                                        {name + ".labels", DType::kI64, {rows, T}, labels.data()}});
}

class CliBadArgs : public ::testing::Test {
 protected:
  // One tiny trained run (2 steps of a 16-wide quickstart, checkpoints at steps 1 and 2) and
  // the data files, shared by every test of the suite.
  static void SetUpTestSuite() {
    tmp_ = fs::temp_directory_path() / ("kimi_cli_bad_args_" + std::to_string(getpid()));
    fs::remove_all(tmp_);
    fs::create_directories(tmp_ / "work");
    std::ofstream(tmp_ / "empty.yaml") << "# nothing set\n";
    std::ofstream(tmp_ / "no_keys.yaml") << "train:\nmodel:\n";
    run_ = (tmp_ / "trained").string();
    // A run keeps only its latest checkpoint: step 1 is set aside and put back after the run
    // is resumed to step 2.
    trained_ = run_cli(
        {"run", quickstart(), "train.steps=2", "train.eval_every=0", "train.log_every=1",
         "model.d_model=16", "model.head_dim=8", "train.batch_size=2", "eval.num_examples=4",
         "train.target_accuracy=0", "--out", run_, "--stop-at", "1", "--no-plot", "--no-progress"},
        tmp_ / "work", 300);
    const fs::path step1 = fs::path(run_) / "ckpt_step1.safetensors";
    if (trained_.exit_code == 0 && fs::exists(step1)) {
      fs::copy_file(step1, tmp_ / "step1.safetensors");
      trained_ =
          run_cli({"run", "--resume", run_, "--no-plot", "--no-progress"}, tmp_ / "work", 300);
      if (fs::exists(tmp_ / "step1.safetensors") && !fs::exists(step1))
        fs::copy_file(tmp_ / "step1.safetensors", step1);
    }
    const std::vector<int64_t> ok_in = {3, 4, 5, 6, 7, 8}, ok_lab = {-100, 4, 5, -100, 7, 8};
    write_slice(tmp_ / "good.safetensors", "s", 2, 3, ok_in, ok_lab);
    std::vector<int64_t> big = ok_in;
    big[4] = (int64_t{1} << 32) + 5;  // truncated to int32 it would be the valid id 5
    write_slice(tmp_ / "big_id.safetensors", "big", 2, 3, big, ok_lab);
    std::vector<int64_t> bad_label = ok_lab;
    bad_label[2] = 300;  // quickstart's vocabulary is 256
    write_slice(tmp_ / "bad_label.safetensors", "lab", 2, 3, ok_in, bad_label);
    write_slice(tmp_ / "no_rows.safetensors", "empty", 0, 3, {}, {});
    write_slice(tmp_ / "t_zero.safetensors", "short", 2, 0, {}, {});
    write_slice(tmp_ / "no_labels.safetensors", "unscored", 2, 3, ok_in,
                std::vector<int64_t>(6, -100));
  }
  static void TearDownTestSuite() { fs::remove_all(tmp_); }

  static std::string quickstart() {
    return (fs::path(KIMI_SOURCE_DIR) / "experiments" / "quickstart.yaml").string();
  }
  // {RUN}, {TMP}, {Q} (quickstart.yaml), {SRC} and {GOLD} replaced in every argument.
  static std::vector<std::string> expand(std::vector<std::string> args) {
    const std::map<std::string, std::string> vars = {{"{RUN}", run_},
                                                     {"{TMP}", tmp_.string()},
                                                     {"{Q}", quickstart()},
                                                     {"{SRC}", KIMI_SOURCE_DIR},
                                                     {"{GOLD}", KIMI_GOLDEN_DIR}};
    for (auto& a : args)
      for (const auto& [key, value] : vars)
        for (size_t at; (at = a.find(key)) != std::string::npos;) a.replace(at, key.size(), value);
    return args;
  }
  static CliResult cli(const std::vector<std::string>& args, unsigned timeout_s = 60) {
    return run_cli(expand(args), tmp_ / "work", timeout_s);
  }
  void SetUp() override {
    ASSERT_EQ(trained_.exit_code, 0) << trained_.err;
    ASSERT_TRUE(fs::exists(fs::path(run_) / "ckpt_step1.safetensors"));
    ASSERT_TRUE(fs::exists(fs::path(run_) / "ckpt_step2.safetensors"));
  }

  static inline fs::path tmp_;
  static inline std::string run_;
  static inline CliResult trained_;
};

// Each row: the arguments and a part of the one error line (naming the flag, key, file or
// slice). Placeholders as in expand().
struct BadArgs {
  std::vector<std::string> args;
  std::string names;
};

const std::vector<BadArgs>& bad_args_table() {
  static const std::vector<BadArgs> table = {
      // no subcommand, unknown subcommand, unknown top-level flag, bad log level
      {{}, "a subcommand is required"},
      {{"x"}, "unknown subcommand 'x'"},
      {{"trian", "{Q}"}, "unknown subcommand 'trian'"},
      {{"--bogus"}, "--bogus"},
      {{"--log-level", "loud", "version"}, "--log-level"},
      {{"version", "--bogus"}, "--bogus"},
      // run: files
      {{"run"}, "config file"},
      {{"run", "{TMP}/missing.yaml"}, "missing.yaml"},
      {{"run", "{TMP}"}, "is a directory"},
      {{"run", "{TMP}/empty.yaml"}, "empty.yaml"},
      {{"run", "{TMP}/no_keys.yaml"}, "no_keys.yaml"},
      {{"run", "{TMP}/good.safetensors"}, "good.safetensors"},
      {{"run", "--resume", "{TMP}/nope"}, "nope"},
      // run: zero, negative, huge, wrong kind, non-finite
      {{"run", "{Q}", "train.steps=0"}, "train.steps"},
      {{"run", "{Q}", "train.steps=-1"}, "train.steps"},
      {{"run", "{Q}", "train.steps=2.5"}, "train.steps"},
      {{"run", "{Q}", "train.steps=1e3.5"}, "train.steps"},
      {{"run", "{Q}", "train.steps=1e30"}, "train.steps"},
      {{"run", "{Q}", "train.steps=99999999999999999999"}, "train.steps"},
      {{"run", "{Q}", "train.steps=abc"}, "train.steps"},
      {{"run", "{Q}", "train.lr=.inf"}, "train.lr"},
      {{"run", "{Q}", "train.lr=-.inf"}, "train.lr"},
      {{"run", "{Q}", "train.lr=.nan"}, "train.lr"},
      {{"run", "{Q}", "train.grad_clip=.inf"}, "train.grad_clip"},
      {{"run", "{Q}", "model.init_std=.nan"}, "model.init_std"},
      {{"run", "{Q}", "train.lr=0"}, "train.lr"},
      {{"run", "{Q}", "train.batch_size=0"}, "train.batch_size"},
      {{"run", "{Q}", "train.seq_len=-5"}, "train.seq_len"},
      {{"run", "{Q}", "train.seq_len=99999999999"}, "train.seq_len"},
      {{"run", "{Q}", "model.d_model=0"}, "model.d_model"},
      {{"run", "{Q}", "model.d_model=1000000000"}, "model.d_model"},
      {{"run", "{Q}", "model.n_layers=1e6", "model.d_model=4096"}, "model.n_layers"},
      {{"run", "{Q}", "task.vocab_size=1e10"}, "task.vocab_size"},
      {{"run", "{Q}", "eval.num_examples=0"}, "eval.num_examples"},
      {{"run", "{Q}", "eval.seq_lens=[0]"}, "eval.seq_lens"},
      {{"run", "{Q}", "model.mixer=attention", "model.rope=true", "model.head_dim=33"},
       "model.head_dim"},
      {{"run", "{Q}", "model.mixer=fancy"}, "model.mixer"},
      {{"run", "{Q}", "bogus.key=1"}, "bogus.key"},
      {{"run", "{Q}", "train.lr"}, "train.lr"},
      {{"run", "{Q}", "train.device=tpu"}, "train.device"},
      // run: flags
      {{"run", "{Q}", "--stop-at", "0"}, "--stop-at"},
      {{"run", "{Q}", "--stop-at", "-1"}, "--stop-at"},
      {{"run", "{Q}", "--stop-at", "abc"}, "--stop-at"},
      {{"run", "{Q}", "--stop-at", "99999999999999999999"}, "--stop-at"},
      {{"run", "{Q}", "--device", "tpu"}, "--device"},
      {{"run", "{Q}", "--bogus"}, "--bogus"},
      // sweep
      {{"sweep"}, "sweep_file"},
      {{"sweep", "{TMP}/missing.yaml"}, "missing.yaml"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--only", "-1", "--dry-run"}, "--only"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--only", "abc", "--dry-run"}, "--only"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--only", "99", "--dry-run"}, "99"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--bogus"}, "--bogus"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--shard", "2/2", "--dry-run"},
       "--shard 2/2"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--shard", "x", "--dry-run"}, "--shard x"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--summarize", "--only", "0"},
       "--summarize"},
      // eval: the run, the mode, lengths, batch size, checkpoint, device
      {{"eval"}, "run_dir"},
      {{"eval", "{TMP}/nope", "--seq-lens", "128"}, "nope"},
      {{"eval", "{TMP}", "--seq-lens", "128"}, "not a run directory"},
      {{"eval", "{RUN}"}, "--seq-lens"},
      {{"eval", "{RUN}", "--data", "{TMP}/good.safetensors", "--seq-lens", "128"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "0"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "-5"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "abc"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "99999999999"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "8"}, "--seq-lens 8"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--batch-size", "0"}, "--batch-size"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--batch-size", "-1"}, "--batch-size"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--batch-size", "abc"}, "--batch-size"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--batch-size", "99999999999999999999"},
       "--batch-size"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--ckpt", "999"}, "--ckpt 999"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--ckpt", "99999999999999999999999"}, "--ckpt"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--ckpt", "{TMP}/nope.safetensors"}, "--ckpt"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--ckpt", "{TMP}/good.safetensors"},
       "good.safetensors"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--device", "tpu"}, "--device"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--bogus"}, "--bogus"},
      // eval --data: files made elsewhere
      {{"eval", "{RUN}", "--data", "{TMP}/missing.safetensors"}, "missing.safetensors"},
      {{"eval", "{RUN}", "--data", "{TMP}/empty.yaml"}, "empty.yaml"},
      {{"eval", "{RUN}", "--data", "{TMP}/big_id.safetensors"}, "slice 'big': token id 4294967301"},
      {{"eval", "{RUN}", "--data", "{TMP}/bad_label.safetensors"}, "slice 'lab': label 300"},
      {{"eval", "{RUN}", "--data", "{TMP}/no_rows.safetensors"}, "slice 'empty': no rows"},
      {{"eval", "{RUN}", "--data", "{TMP}/t_zero.safetensors"}, "slice 'short': no positions"},
      {{"eval", "{RUN}", "--data", "{TMP}/no_labels.safetensors"},
       "slice 'unscored': no scored labels"},
      {{"eval", "{RUN}", "--data", "{TMP}/good.safetensors", "--batch-size", "0"}, "--batch-size"},
      // simulate --model
      {{"simulate", "--preset", "kimi-linear-48b", "--model", "fast"},
       "--model fast: unknown time model (known: roofline, engine)"},
      {{"simulate", "--preset", "kimi-linear-48b", "--gpu", "h100", "--model", "engine"},
       "no engine profile for GPU 'h100'"},
      // plot
      {{"plot"}, "runs"},
      {{"plot", "{TMP}/nope"}, "nope"},
      {{"plot", "{RUN}", "--bogus"}, "--bogus"},
      // verify
      {{"verify"}, "file"},
      {{"verify", "{TMP}/missing.safetensors"}, "missing.safetensors"},
      {{"verify", "{TMP}/empty.yaml"}, "empty.yaml"},
      {{"verify", "{GOLD}/linear_ops_small.safetensors", "--dtype", "f16"}, "--dtype"},
      {{"verify", "{GOLD}/linear_ops_small.safetensors", "--device", "tpu"}, "--device"},
      // bench
      {{"bench-infer", "--batch", "0"}, "--batch"},
      {{"bench-infer", "--batch", "4x"}, "--batch"},
      {{"bench-infer", "--models", "gdn"}, "--models"},
      {{"bench-infer", "--contexts", "0"}, "--contexts"},
      {{"bench-infer", "--reps", "0"}, "--reps"},
      {{"bench-infer", "--warmup", "-1"}, "--warmup"},
      {{"bench-infer", "--seed", "-1"}, "--seed"},
      {{"bench-infer", "--prefill-max", "lots"}, "--prefill-max"},
      {{"bench-infer", "--prefill-chunk", "0"}, "--prefill-chunk"},
      {{"bench-infer", "--prefill-chunk", "128K"}, "--prefill-chunk"},
      {{"bench", "--reps", "0"}, "--reps"},
      {{"bench", "--reps", "-1"}, "--reps"},
      {{"bench", "--reps", "abc"}, "--reps"},
      {{"bench", "--reps", "99999999999999999999"}, "--reps"},
      {{"bench", "--mixers", "fancy"}, "--mixers"},
      {{"bench", "--seq-lens", "0"}, "--seq-lens"},
      {{"bench", "--seq-lens", "-4"}, "--seq-lens"},
      {{"bench", "--heads", "0"}, "--heads"},
      {{"bench", "--head-dim", "-1"}, "--head-dim"},
      {{"bench", "--batch", "0"}, "--batch"},
      {{"bench", "--device", "tpu"}, "--device"},
      // inspect
      {{"inspect"}, "file"},
      {{"inspect", "{TMP}/missing.safetensors"}, "missing.safetensors"},
      {{"inspect", "{TMP}"}, "{TMP}"},
      {{"inspect", "{TMP}/empty.yaml"}, "empty.yaml"},
      // generate and model-info
      {{"generate"}, "MODEL_DIR"},
      {{"generate", "{TMP}/nope", "--prompt-ids", "1"}, "nope"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "abc"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "99999999"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "-1"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--max-new-tokens", "-1"},
       "--max-new-tokens"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--max-new-tokens", "999999999999"},
       "--max-new-tokens"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--temperature", "0"},
       "--temperature"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--temperature", ".nan"},
       "--temperature"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--dtype", "f16"}, "--dtype"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--device", "tpu"}, "--device"},
      {{"generate", "--prompt-ids", "1"}, "MODEL_DIR"},
      {{"generate", "{GOLD}/kimi_tiny"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1,,2"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--prompt-ids", "2x"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--prompt-ids", "5,128"},
       "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--stop-id", "-3"}, "--stop-id"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--stop-id", "128"}, "--stop-id"},
      // generate --engine: what the engine cannot do, refused before any device is touched
      {{"generate", "--preset", "kimi-linear-48b", "--prompt-ids", "1"}, "--preset"},
      {{"generate", "--engine", "--preset", "nope", "--prompt-ids", "1"}, "--preset"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--preset", "kimi-linear-48b", "--prompt-ids",
        "1"},
       "--preset"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--device", "cpu", "--prompt-ids", "1"},
       "--device"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--dtype", "f64", "--prompt-ids", "1"},
       "--dtype"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--prompt-ids", "1", "--prompt-ids", "a"},
       "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--prompt-ids", "1", "--temperature", "-1"},
       "--temperature"},
      {{"model-info"}, "MODEL_DIR"},
      {{"model-info", "--preset", "nope"}, "--preset"},
      {{"model-info", "{TMP}/nope"}, "nope"},
  };
  return table;
}

TEST_F(CliBadArgs, EveryBadArgumentIsOneLineAndExitTwo) {
  for (const BadArgs& row : bad_args_table()) {
    const std::vector<std::string> args = expand(row.args);
    const CliResult r = cli(row.args);
    const std::string what = show(args) + "\nstderr: " + r.err;
    EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal << ": " << what;
    EXPECT_EQ(r.exit_code, 2) << what;
    EXPECT_EQ(r.stderr_lines(), 1) << what;
    EXPECT_NE(r.err.find(expand({row.names})[0]), std::string::npos)
        << "the line should name '" << row.names << "': " << what;
  }
  // Nothing was trained or written by a refused run or sweep.
  EXPECT_FALSE(fs::exists(tmp_ / "work" / "runs")) << "a refused command wrote a run directory";
}

TEST_F(CliBadArgs, UnknownSubcommandListsTheSubcommands) {
  const CliResult r = cli({"x"});
  for (const char* name : {"run", "sweep", "eval", "verify", "generate"})
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("unknown subcommand 'x'; try kimi-lab --help"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("A subcommand is required"), std::string::npos) << r.err;
}

TEST_F(CliBadArgs, HelpStillExitsZero) {
  for (const char* sub : {"run", "eval", "sweep", "bench"}) {
    const CliResult r = cli({sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << sub << r.err;
  }
  EXPECT_NE(cli({"run", "--help"}).out.find("--no-estimate"), std::string::npos);
}

TEST_F(CliBadArgs, EvalAtOtherLengthsWritesOneCsvKeepingEarlierCheckpoints) {
  const fs::path csv = fs::path(run_) / "eval_lengths.csv";
  fs::remove(csv);
  const CliResult first = cli({"eval", "{RUN}", "--seq-lens", "128,256", "--ckpt", "1"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.out.find("trained at T=128"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("ckpt_step1.safetensors (step 1)"), std::string::npos) << first.out;
  const CliResult latest = cli({"eval", "{RUN}", "--seq-lens", "256"});  // default: the latest
  ASSERT_EQ(latest.exit_code, 0) << latest.err;
  EXPECT_NE(latest.out.find("(step 2)"), std::string::npos) << latest.out;
  // By path, relative to the run directory; the same (step, length) row is replaced.
  ASSERT_EQ(
      cli({"eval", "{RUN}", "--seq-lens", "256", "--ckpt", "ckpt_step2.safetensors"}).exit_code, 0);
  std::vector<std::string> rows;
  std::istringstream in(slurp(csv));
  for (std::string line; std::getline(in, line);) {
    size_t third = 0;  // the first three columns: step, task, seq_len
    for (int i = 0; i < 3 && third != std::string::npos; ++i) third = line.find(',', third + 1);
    rows.push_back(line.substr(0, third));
  }
  ASSERT_EQ(rows.size(), 4u) << slurp(csv);  // header, step 1 at 128 and 256, step 2 at 256
  EXPECT_EQ(rows[0].rfind("step,task,seq_len", 0), 0u);
  EXPECT_EQ(rows[1], "1,mqar,128");
  EXPECT_EQ(rows[2], "1,mqar,256");
  EXPECT_EQ(rows[3], "2,mqar,256");
}

TEST_F(CliBadArgs, EvalOnGoodDataPrintsTheSlice) {
  const CliResult r = cli({"eval", "{RUN}", "--data", "{TMP}/good.safetensors"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("s "), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(fs::path(run_) / "eval_good.csv"));
}

TEST_F(CliBadArgs, IntegralExponentForAnIntegerKeyIsAccepted) {
  // train.steps=2e0 is 2: the run trains (into its own directory) and finishes.
  const CliResult r = cli({"run", "{Q}", "train.steps=2e0", "model.d_model=16", "model.head_dim=8",
                           "train.batch_size=2", "eval.num_examples=4", "--out", "{TMP}/exp_steps",
                           "--no-plot", "--no-progress"},
                          300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp_ / "exp_steps" / "ckpt_step2.safetensors"));
}

TEST_F(CliBadArgs, LongCpuRunIsWarnedAboutBeforeTraining) {
  // The quickstart at 10 million steps: the estimate (timed here) is far past 30 minutes. The
  // child is killed once the warning is out; it must come before any training step.
  const CliResult r = run_cli(expand({"run", "{Q}", "train.steps=10000000", "--out", "{TMP}/long",
                                      "--no-plot", "--no-progress"}),
                              tmp_ / "work", 300, "Ctrl-C stops it");
  EXPECT_NE(r.err.find("on the CPU: about"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("experiments/quickstart.yaml"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("train.steps=1500"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("run dir "), std::string::npos) << "warned after the run began: " << r.err;
  // --no-estimate: no timing, no warning (the run is stopped at its first step).
  const CliResult quiet =
      cli({"run", "{Q}", "train.steps=10000000", "--stop-at", "1", "--no-estimate", "--out",
           "{TMP}/quiet", "--no-plot", "--no-progress"},
          300);
  EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err.find("on the CPU: about"), std::string::npos) << quiet.err;
}

// generate on the f32 model: several prompts run one after the other, each as it runs alone;
// --stop-id ends a prompt at that id.
TEST_F(CliBadArgs, GenerateSeveralPromptsEachAsAlone) {
  auto generated = [](const std::string& out, const std::string& label) {
    const size_t at = out.find(label);
    if (at == std::string::npos) return std::string("(missing)");
    const size_t from = at + label.size();
    return out.substr(from, out.find('\n', from) - from);
  };
  const std::vector<std::string> base = {
      "generate", "{GOLD}/kimi_tiny", "--max-new-tokens", "6", "--seed", "5", "--temperature",
      "0.7"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return cli(args);
  };
  const CliResult both = with({"--prompt-ids", "1,5,9,13", "--prompt-ids", "7,3"});
  ASSERT_EQ(both.exit_code, 0) << both.err;
  const CliResult first = with({"--prompt-ids", "1,5,9,13"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  // Prompt 2 draws from stream mix_seed(5, 1): alone it is the first prompt of that seed.
  const CliResult second =
      cli({"generate", "{GOLD}/kimi_tiny", "--max-new-tokens", "6", "--seed",
           std::to_string(mix_seed(5, 1)), "--temperature", "0.7", "--prompt-ids", "7,3"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const std::string ids1 = generated(both.out, "generated 1 ids: ");
  EXPECT_EQ(ids1, generated(first.out, "generated ids: ")) << both.out;
  EXPECT_EQ(generated(both.out, "generated 2 ids: "), generated(second.out, "generated ids: "))
      << both.out;
  EXPECT_EQ(std::count(ids1.begin(), ids1.end(), ','), 5) << ids1;
  // Stop at the third generated id of prompt 1 (or earlier, where it first appears).
  std::vector<std::string> ids;
  std::stringstream ss(ids1);
  for (std::string id; std::getline(ss, id, ',');) ids.push_back(id);
  ASSERT_EQ(ids.size(), 6u);
  const CliResult stopped = with({"--prompt-ids", "1,5,9,13", "--stop-id", ids[2]});
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  const size_t upto = std::find(ids.begin(), ids.end(), ids[2]) - ids.begin();
  std::string want;
  for (size_t i = 0; i <= upto; ++i) want += (i ? "," : "") + ids[i];
  EXPECT_EQ(generated(stopped.out, "generated ids: "), want + " (stop id)") << stopped.out;
}

// A build without the decode engine refuses --engine in one line (a CUDA build skips this).
TEST_F(CliBadArgs, GenerateEngineWithoutCudaIsOneLine) {
  const CliResult v = cli({"version"});
  if (v.out.find("cuda: off") == std::string::npos) GTEST_SKIP() << "built with CUDA: " << v.out;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"generate", "--engine", "--preset", "kimi-linear-48b",
                                 "--prompt-ids", "1,2"},
        {"generate", "{GOLD}/kimi_tiny", "--engine", "--prompt-ids", "1", "--greedy"}}) {
    const CliResult r = cli(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.stderr_lines(), 1) << r.err;
    EXPECT_NE(r.err.find("generate --engine: this kimi-lab was built without CUDA"),
              std::string::npos)
        << r.err;
  }
}

}  // namespace
}  // namespace kimi
