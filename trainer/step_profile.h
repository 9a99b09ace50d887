// `kimi-lab run --profile-step N`: step N's time op by op (core/tensor/op_profile.h), written to
// the run directory as profile_step.csv and printed as a table after the run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/op_profile.h"

namespace kimi {

struct StepProfile {
  int64_t step = 0;                   // 1-based, as metrics.csv counts steps
  double profiled_ms = 0;             // the sum of the rows (the device synchronised at every op)
  double unprofiled_ms = 0;           // the step before it, as it ran (0 when it was the first)
  std::vector<profile::OpTime> rows;  // the largest first
};

// profile_step.csv: step, op, pass (forward | backward | step | -), calls, ms, share (of the
// profiled step), us_per_call; rewritten atomically.
void write_step_profile(const std::string& path, const StepProfile& p);

// The table for a terminal: one line per row down to `min_share` of the step (the rest summed
// into one line), with the two step times.
std::string format_step_profile(const StepProfile& p, double min_share = 0.005);

}  // namespace kimi
