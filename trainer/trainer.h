// The training loop behind `kimi-lab run`: AdamW + warmup/cosine, grad clipping, periodic
// evaluation over every eval slice, atomic CSVs and checkpoints, resume, early stop, and a
// clear stop on a non-finite loss that keeps the last good checkpoint.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/tensor/error.h"
#include "trainer/config.h"
#include "trainer/evaluate.h"
#include "trainer/run_lock.h"  // RunDirUnavailable
#include "trainer/step_profile.h"

namespace kimi {

struct RunRequest {
  std::string config_path;             // the YAML file ("" when resuming)
  std::vector<std::string> overrides;  // key=value
  std::string out_dir;                 // "" = out_dir/name from the config
  std::string resume_dir;              // continue the run in this directory
  std::string device;                  // "" = train.device
  bool progress = true;                // a progress bar when stderr is a terminal
  int64_t stop_at = 0;                 // > 0: checkpoint and stop at this step (resume later)
  int64_t profile_step = 0;            // > 0: time this step op by op (trainer/step_profile.h)
  // The caller (a sweep) already holds the run directory's exclusive lock. flock is per open
  // file, so taking it again in the same process would be refused as "in use".
  bool caller_holds_lock = false;
};

struct RunResult {
  std::string run_dir;
  int64_t steps_done = 0;
  double final_loss = 0;
  bool stopped_early = false;
  std::vector<SliceResult> last_eval;
  std::optional<StepProfile> profile;  // with RunRequest::profile_step, once that step ran
};

// Holds the run directory's lock for its whole life (a second process on the same directory is
// refused), removes temp files that a killed writer left there, keeps status.json current
// (trainer/run_status.h), and on SIGINT/SIGTERM finishes the step, checkpoints and ends the
// process by that signal (StopSignals::reraise).
RunResult run_training(const RunRequest& request);

// SIGINT/SIGTERM stopped the run (after its checkpoint and status.json were written) and the
// process's previous handler for that signal returned instead of ending the process.
class RunInterrupted : public UserError {
 public:
  using UserError::UserError;
};

// cpu | cuda | auto -> the device to use (UserError if cuda is asked for but not built/present).
Device resolve_device(const std::string& name);

}  // namespace kimi
