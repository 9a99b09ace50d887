// `--jobs N` (trainer/sweep_workers.h): N child processes, each training one point, scheduled by
// the parent, which alone writes the summaries. Children are started with posix_spawn (no code
// runs between fork and exec in this multi-threaded process) and polled with waitpid(WNOHANG) on
// their own pids, so nothing else this process started is reaped by mistake.
#include "trainer/sweep_workers.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "trainer/dir_lock.h"
#include "trainer/sweep_internal.h"

extern char** environ;

namespace kimi::sweep_detail {
namespace {

namespace fs = std::filesystem;

std::string last_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

// The environment of a child: ours, with CUDA_VISIBLE_DEVICES set to its GPU (when GPUs are
// handed out) and OMP_NUM_THREADS to its share of the cores (unless the user set it).
std::vector<std::string> child_environment(const std::string& gpu, int threads) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (!gpu.empty() && kv.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0) continue;
    env.push_back(kv);
  }
  if (!gpu.empty()) env.push_back("CUDA_VISIBLE_DEVICES=" + gpu);
  if (std::getenv("OMP_NUM_THREADS") == nullptr)
    env.push_back(fmt::format("OMP_NUM_THREADS={}", threads));
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& items) {
  std::vector<char*> out;
  for (auto& s : items) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Starts `argv` with stdout and stderr appended to `log`. Throws kimi::Error when it cannot.
pid_t spawn(std::vector<std::string> argv, std::vector<std::string> env, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, STDIN_FILENO);
  pid_t pid = -1;
  auto args = c_strings(argv);
  auto envp = c_strings(env);
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    throw UserError(
        fmt::format("cannot start the sweep worker '{}': {}", argv[0], std::strerror(rc)));
  return pid;
}

struct Running {
  size_t index = 0;
  pid_t pid = -1;
  size_t slot = 0;  // 0..jobs-1, unique among the running children
  std::string gpu;
  bool resume = false;
  std::chrono::steady_clock::time_point t0;
};

// The lowest child slot no running child holds; slot k runs on GPU k mod the GPU count.
size_t free_slot(const std::vector<Running>& running) {
  for (size_t k = 0;; ++k)
    if (std::none_of(running.begin(), running.end(), [&](const Running& r) { return r.slot == k; }))
      return k;
}

// Ctrl-C (SIGINT) or SIGTERM while children run: remembered here, forwarded to every child by
// the scheduling loop, which then waits for them (a killed child keeps its last checkpoint, so
// the point resumes on the next run) instead of dying and leaving them training unwatched.
volatile std::sig_atomic_t g_signal = 0;
extern "C" void remember_signal(int sig) { g_signal = sig; }

// Installs remember_signal for SIGINT and SIGTERM for its lifetime, then restores the old ones.
class SignalGuard {
 public:
  SignalGuard() {
    g_signal = 0;
    struct sigaction sa = {};
    sa.sa_handler = remember_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct sigaction old_int_ = {}, old_term_ = {};
};

// Writes failed.txt for a child that died without writing it (a crash, a kill, a UserError).
std::string record_failure(const SweepPoint& p, int status) {
  const fs::path failed = fs::path(p.dir) / "failed.txt";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && fs::exists(failed)) {
    std::ifstream in(failed);
    std::string first;
    std::getline(in, first);
    return first;
  }
  const std::string log = (fs::path(p.dir) / "worker.log").string();
  const std::string why =
      WIFSIGNALED(status) ? fmt::format("the worker was killed by signal {} ({})", WTERMSIG(status),
                                        strsignal(WTERMSIG(status)))
                          : fmt::format("the worker exited with status {}", WEXITSTATUS(status));
  const std::string tail = last_line(log);
  const std::string text =
      fmt::format("{}; see {}{}", why, log, tail.empty() ? "" : ": last line '" + tail + "'");
  io::write_file_atomic(failed.string(), text + "\n");
  return text;
}

}  // namespace

std::vector<std::string> gpus_to_hand_out(const char* cuda_visible_devices, size_t driver_gpus) {
  std::vector<std::string> gpus;
  if (cuda_visible_devices != nullptr || driver_gpus < 2) return gpus;
  for (size_t i = 0; i < driver_gpus; ++i) gpus.push_back(std::to_string(i));
  return gpus;
}

size_t driver_gpu_count() {
  std::error_code ec;
  size_t n = 0;
  for (auto it = fs::directory_iterator("/proc/driver/nvidia/gpus", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

void run_in_workers(SweepReport& rep, const std::vector<size_t>& todo,
                    const std::vector<bool>& stale, const std::string& sweep_file,
                    const SweepOptions& opt) {
  // A stale point (--force on a changed config) is cleared here, under its lock, so the child
  // simply finds it pending.
  for (size_t i : todo) {
    if (!stale[i]) continue;
    const SweepPoint& p = rep.points[i];
    fs::create_directories(p.dir);
    const DirLock lock(p.dir, DirLock::Mode::kExclusive, "sweep point");
    spdlog::warn("{}: its config changed; retraining from scratch", p.name);
    for (const auto& entry : fs::directory_iterator(p.dir))
      if (entry.path().filename() != ".lock") fs::remove_all(entry.path());
  }
  const std::vector<std::string> gpus =
      gpus_to_hand_out(std::getenv("CUDA_VISIBLE_DEVICES"), driver_gpu_count());
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = std::max(1, cores / opt.jobs);
  spdlog::info("sweep: {} points to train, {} at a time ({}; {} CPU threads each)", todo.size(),
               opt.jobs,
               gpus.empty() ? std::string("the children share the device")
                            : fmt::format("child k on GPU k mod {}", gpus.size()),
               threads);

  const SignalGuard signals;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Running> running;
  size_t next = 0, done = 0, trained = 0;
  double trained_s = 0;
  bool forwarded = false;
  while ((next < todo.size() && g_signal == 0) || !running.empty()) {
    if (g_signal != 0 && !forwarded) {
      spdlog::warn("sweep: {} received; passing it to the {} running points and waiting for them",
                   strsignal(g_signal), running.size());
      for (const auto& r : running) kill(r.pid, g_signal);
      forwarded = true;
    }
    while (g_signal == 0 && next < todo.size() && running.size() < static_cast<size_t>(opt.jobs)) {
      const size_t i = todo[next++];
      const SweepPoint& p = rep.points[i];
      fs::create_directories(p.dir);
      std::vector<std::string> argv = opt.worker_command;
      argv.insert(argv.end(), {sweep_file, "--worker-point", std::to_string(p.index)});
      if (!opt.device.empty()) argv.insert(argv.end(), {"--device", opt.device});
      if (opt.stop_at > 0) argv.insert(argv.end(), {"--stop-at", std::to_string(opt.stop_at)});
      Running r;
      r.index = i;
      r.slot = free_slot(running);
      r.gpu = gpus.empty() ? "" : gpus[r.slot % gpus.size()];
      r.resume = rep.states[i] == PointState::kInterrupted && !stale[i];
      r.t0 = std::chrono::steady_clock::now();
      r.pid =
          spawn(argv, child_environment(r.gpu, threads), (fs::path(p.dir) / "worker.log").string());
      spdlog::info("[{}/{}] {}: {}{} (pid {}, log {}/worker.log)", i + 1, rep.points.size(), p.name,
                   r.resume ? "resuming" : "training", r.gpu.empty() ? "" : " on GPU " + r.gpu,
                   r.pid, p.dir);
      running.push_back(r);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (size_t k = 0; k < running.size();) {
      int status = 0;
      const pid_t got = waitpid(running[k].pid, &status, WNOHANG);
      if (got == 0 || (got < 0 && errno == EINTR)) {
        ++k;
        continue;
      }
      const Running r = running[k];
      running.erase(running.begin() + static_cast<std::ptrdiff_t>(k));
      const SweepPoint& p = rep.points[r.index];
      const double took = seconds_since(r.t0);
      const bool ok = got > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
      const bool locked = got > 0 && WIFEXITED(status) && WEXITSTATUS(status) == kPointLockedStatus;
      // Stopped by the signal we passed on: not a failure, the point resumes next time.
      const bool stopped = !ok && g_signal != 0 && !fs::exists(fs::path(p.dir) / "failed.txt");
      std::string outcome;
      if (ok) {
        rep.actions[r.index] = r.resume ? PointAction::kResumed : PointAction::kTrained;
        trained_s += took;
        ++trained;
        outcome = fmt::format("finished in {}", duration_text(took));
      } else if (locked) {
        rep.actions[r.index] = PointAction::kSkipped;
        rep.locked.push_back(p.name);
        outcome = "in use by another kimi-lab process; skipped";
      } else if (stopped) {
        rep.actions[r.index] = PointAction::kSkipped;
        outcome = "stopped by the signal; it resumes from its last checkpoint next time";
      } else {
        rep.actions[r.index] = PointAction::kFailed;
        const std::string why = got < 0 ? fmt::format("lost track of the worker (pid {}): {}",
                                                      r.pid, std::strerror(errno))
                                        : record_failure(p, status);
        rep.failures.push_back(fmt::format("{}: {}", p.name, why));
        outcome = "failed: " + why;
      }
      ++done;
      rep.finished_dirs = write_sweep_summary(rep.spec.dir(), rep.points);
      const std::string line = fmt::format(
          "[{}/{}] {}: {}; {}", r.index + 1, rep.points.size(), p.name, outcome,
          progress_text(done, todo.size(), running.size(), seconds_since(t0),
                        trained ? trained_s / static_cast<double>(trained) : 0, opt.jobs));
      ok || locked || stopped ? spdlog::info("{}", line) : spdlog::error("{}", line);
    }
  }
  rep.interrupted_by = g_signal;
}

}  // namespace kimi::sweep_detail
