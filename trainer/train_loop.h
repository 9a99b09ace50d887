// Internal to trainer/trainer.cpp and trainer/train_loop.cpp: rank 0's training loop over an
// open session, which also writes what the run directory shows of it (metrics.csv, eval.csv,
// moe_load.csv, checkpoints, summary.json, status.json).
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <optional>
#include <string>

#include "core/optim/optimizer.h"
#include "core/tensor/op_profile.h"
#include "trainer/lm_metrics.h"
#include "trainer/metrics_writer.h"
#include "trainer/progress.h"
#include "trainer/run_session.h"
#include "trainer/run_status.h"
#include "trainer/trainer.h"

namespace kimi::train_detail {

// One training run over an open session: steps, logging, evals, checkpoints, summary, status.
class TrainLoop {
 public:
  TrainLoop(Session& s, const RunRequest& req, RunStatus& status, const StopSignals& signals);

  RunResult run();

  int64_t step() const { return step_; }
  bool interrupted() const { return interrupted_; }

  static const char* signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
  }

 private:
  struct StepStats {
    double loss = 0, lr = 0, grad_norm = 0, secs = 0, tok_s = 0;
  };

  // A run killed after its last checkpoint but before its summary.json (the final step, or the
  // eval that met train.target_accuracy): the model is evaluated again, which gives the same
  // numbers as before, and the summary and status are written without training further.
  bool finished_before_its_summary();

  // Step `step` (0-based) trains on the batch drawn with seed mix(train.seed, step).
  StepStats train_step(int64_t step);

  // Keeps what was written, names the checkpoint to go back to, and stops the run.
  [[noreturn]] void fail(const std::string& what);

  void log_step(int64_t step, const StepStats& st);

  // --profile-step: profile_step.csv in the run directory and the table in the result.
  void record_profile(int64_t step, std::vector<profile::OpTime> rows);

  // MoE: each expert's share of the step's routed tokens into moe_load.csv; returns the
  // busiest expert's load over the mean for metrics.csv (empty for a dense model).
  CsvValue log_moe_load(int64_t step);

  // Evaluates every slice (rows in eval.csv when `record`); true when all reach
  // train.target_accuracy (early stop).
  bool evaluate(int64_t step, bool record);

  void checkpoint(int64_t step, double loss);

  void write_summary() const;

  double wall_seconds() const;

  Session& s_;
  const RunRequest& req_;
  const TrainConfig& t_;
  CsvTable metrics_, evals_;
  std::optional<CsvTable> moe_load_;  // moe_load.csv, only for a model with MoE layers
  optim::Schedule schedule_;
  bool bar_on_;
  ProgressBar bar_;
  std::chrono::steady_clock::time_point t_start_;
  RunStatus& status_;
  const StopSignals& signals_;
  RunResult result_;
  int64_t step_ = 0;
  double last_step_secs_ = 0;  // the step before, as it ran (beside a profiled step's time)
  bool interrupted_ = false;
  double last_acc_ = -1;
  LmCounters lm_;
};

}  // namespace kimi::train_detail
