// What a run directory says about the process behind it: status.json (running, finished,
// interrupted or failed, with the reason and the step), the provenance of the numbers (git
// commit, threads, host, command line), and SIGINT/SIGTERM turned into a clean stop.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace kimi {

// kimi_lab_version, git_commit and git_dirty of the build ("unknown" / null without git),
// eigen_threads and omp_threads as now set, host, command_line (the process's argv joined, quoted
// where needed).
nlohmann::json provenance();

// The current UTC time as 2026-12-04T22:39:41Z.
std::string utc_now();

enum class RunState { kRunning, kFinished, kInterrupted, kFailed };
const char* run_state_name(RunState state);

// status.json of one run directory, rewritten atomically on every set():
// {"state", "reason", "step", "started_at", "updated_at", "pid", "provenance"}.
class RunStatus {
 public:
  RunStatus(std::string dir, nlohmann::json provenance);
  // Throws UserError when the file cannot be written.
  void set(RunState state, int64_t step, const std::string& reason);
  // The same, for the failure path: a write that fails (a full disk) is logged, not thrown.
  void set_noexcept(RunState state, int64_t step, const std::string& reason) noexcept;

 private:
  std::string path_;
  nlohmann::json provenance_;
  std::string started_at_;
};

// While one lives, SIGINT and SIGTERM only set a flag that the training loop polls between
// steps (finish the step, checkpoint, write status.json, then stop). The previous handlers
// come back when it is destroyed or in reraise().
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  int received() const;  // 0, or the signal that asked to stop

  // Restores the previous handlers and raises the received signal again, so the process ends
  // the way the signal asked (a shell sees 128 + N: 130 for SIGINT, 143 for SIGTERM). Returns
  // only if the previous handler was not the default one (an embedding program's own).
  void reraise();

 private:
  void restore();
  bool installed_ = false;
};

}  // namespace kimi
