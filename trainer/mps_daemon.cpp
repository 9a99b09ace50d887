// MpsDaemon (trainer/mps_daemon.h). The control program is run with posix_spawnp, so nothing
// runs between fork and exec in this multi-threaded process.
#include "trainer/mps_daemon.h"

#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/tensor/error.h"

extern char** environ;

namespace kimi {
namespace {

namespace fs = std::filesystem;

constexpr const char* kControl = "nvidia-cuda-mps-control";

// Runs `nvidia-cuda-mps-control [arg]`, with `input` on its standard input when not empty.
// Returns its exit status, or -errno when it could not be started.
int run_control(const char* arg, const std::string& input) {
  int fds[2] = {-1, -1};
  if (!input.empty() && pipe(fds) != 0) return -errno;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!input.empty()) {
    posix_spawn_file_actions_adddup2(&actions, fds[0], STDIN_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
  }
  std::vector<char*> argv = {const_cast<char*>(kControl)};
  if (arg) argv.push_back(const_cast<char*>(arg));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, kControl, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (!input.empty()) {
    close(fds[0]);
    if (rc == 0) {
      const ssize_t n = write(fds[1], input.data(), input.size());
      (void)n;  // a control program that died early shows in its exit status
    }
    close(fds[1]);
  }
  if (rc != 0) return -rc;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

MpsDaemon::MpsDaemon() {
  if (const char* dir = std::getenv("CUDA_MPS_PIPE_DIRECTORY"); dir && *dir) {
    pipe_dir_ = dir;
    spdlog::info("--mps: using the MPS daemon of CUDA_MPS_PIPE_DIRECTORY={}", pipe_dir_);
    return;
  }
  // Short: the daemon's control socket path must fit a sockaddr_un (108 bytes).
  std::string tmpl = "/tmp/kimi-lab-mps-XXXXXX";
  if (!mkdtemp(tmpl.data()))
    throw UserError(fmt::format("--mps: cannot create {}: {}", tmpl, std::strerror(errno)));
  root_ = tmpl;
  pipe_dir_ = root_ + "/pipe";
  const std::string log_dir = root_ + "/log";
  fs::create_directories(pipe_dir_);
  fs::create_directories(log_dir);
  setenv("CUDA_MPS_PIPE_DIRECTORY", pipe_dir_.c_str(), 1);
  setenv("CUDA_MPS_LOG_DIRECTORY", log_dir.c_str(), 1);
  const int rc = run_control("-d", "");
  if (rc != 0) {
    unsetenv("CUDA_MPS_PIPE_DIRECTORY");
    unsetenv("CUDA_MPS_LOG_DIRECTORY");
    std::error_code ec;
    fs::remove_all(root_, ec);
    root_.clear();
    throw UserError(rc < 0 ? fmt::format("--mps: cannot run {}: {} (it ships with the NVIDIA "
                                         "driver; drop --mps to time-slice the GPU)",
                                         kControl, std::strerror(-rc))
                           : fmt::format("--mps: `{} -d` exited with {} (drop --mps to "
                                         "time-slice the GPU)",
                                         kControl, rc));
  }
  spdlog::info("--mps: started an MPS control daemon (pipe {})", pipe_dir_);
}

MpsDaemon::~MpsDaemon() {
  if (root_.empty()) return;
  const int rc = run_control(nullptr, "quit\n");
  if (rc != 0) spdlog::warn("--mps: `quit` to the MPS daemon exited with {}", rc);
  unsetenv("CUDA_MPS_PIPE_DIRECTORY");
  unsetenv("CUDA_MPS_LOG_DIRECTORY");
  std::error_code ec;
  fs::remove_all(root_, ec);
}

}  // namespace kimi
