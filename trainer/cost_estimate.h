// How long a run will take on the CPU, measured before it starts: the run's own model is built
// and one forward + backward + AdamW step is timed on a few rows of its own batch, then scaled to
// the batch, the steps left and the evaluations. `kimi-lab run` uses it to warn before a
// GPU-sized config (experiments/mqar.yaml: 20,000 steps at T=1024) starts a run of hundreds of
// hours on the CPU, and to name a CPU-sized variant.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/config.h"

namespace kimi {

struct CostEstimate {
  int64_t rows_timed = 0;  // the larger of the two row counts timed
  double step_s = 0;       // one training step (forward + backward + update), scaled to the batch
  double eval_s = 0;       // one evaluation over every eval slice (forward only)
  int64_t steps = 0;       // training steps the estimate covers
  int64_t evals = 0;       // evaluations in those steps (the last step always evaluates)
  double total_s() const {
    return static_cast<double>(steps) * step_s + static_cast<double>(evals) * eval_s;
  }
};

// Times the config's model on the CPU (train.threads applied) for `steps` steps of training.
// Times an untimed warm-up row, then passes of min(batch, 2) and min(batch, 8) rows (each twice
// when under a second) and fits a fixed + per-row cost, scaled to the batch.
CostEstimate estimate_cpu_cost(const RunConfig& cfg, int64_t steps);

// The fit estimate_cpu_cost scales its timings with: a pass of `small_rows` rows took t_small
// and one of `big_rows` rows t_big; fixed + per-row cost through the two, evaluated at `batch`
// rows, never below t_big (one row count alone: t_big scaled by batch / big_rows).
double scale_to_batch(double t_small, int64_t small_rows, double t_big, int64_t big_rows,
                      int64_t batch);

// Overrides that make this config's task small enough for a CPU (the quickstart's model and
// length: d_model 64, 2 x 32 heads, T=128, 1500 steps with an early stop at 99%).
std::vector<std::string> cpu_sized_overrides(const RunConfig& cfg);

// "about 3.2 hours", "about 4 minutes", "about 20 seconds".
std::string format_duration(double seconds);

}  // namespace kimi
