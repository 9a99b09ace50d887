// What the CLI suites share (cli_bad_args_test.cpp, cli_eval_test.cpp, cli_run_test.cpp,
// cli_generate_test.cpp): run_cli, which runs the built kimi-lab binary as a subprocess and
// captures its exit status, signal, stdout and stderr, and the CliBadArgs fixture, whose suite
// set-up trains one tiny run (checkpoints at steps 1 and 2) and writes the eval data files.
// The fixture lives in a named namespace so that every file's TEST_F(CliBadArgs, ...) shares
// one fixture class (and one suite set-up).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/io/safetensors.h"

namespace kimi::cli_test {

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

inline std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs kimi-lab with args in cwd; a child alive after timeout_s is killed by SIGALRM (reported
// as a signal). With stop_when set, the child is killed as soon as its stderr holds that text.
inline CliResult run_cli(const std::vector<std::string>& args, const fs::path& cwd,
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

inline std::string show(const std::vector<std::string>& args) {
  std::string s = "kimi-lab";
  for (const auto& a : args) s += " " + a;
  return s;
}

// One eval slice in a safetensors file: `<name>.inputs` / `<name>.labels`, I64 [rows, T].
inline void write_slice(const fs::path& path, const std::string& name, int64_t rows, int64_t T,
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

}  // namespace kimi::cli_test
