// The run directory (Hydra's habit, STYLE.md item 12): out_dir/name holding run.json (the
// run id), the resolved config.yaml, the overrides as given (overrides.txt), metrics.csv,
// eval.csv and checkpoints named ckpt_step{N}.safetensors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "trainer/config.h"

namespace kimi {

// Creates `dir` (default: config.out_dir/config.name) and writes run.json (a fresh run id),
// config.yaml (to_yaml) and overrides.txt (one per line), all atomically. Returns the
// directory. UserError on failure.
std::string create_run_dir(const RunConfig& config, const std::vector<std::string>& overrides,
                           const std::string& dir = "");

// True when dir holds (part of) a run: config.yaml, metrics.csv or a checkpoint.
bool holds_run(const std::string& dir);

// run.json: the id every checkpoint of this directory carries, so one copied in from another
// run is refused.
struct RunIdentity {
  std::string run_id;
  // Checkpoints up to this step may carry no run id: the directory was made before run ids
  // existed, and run.json was added when it was first resumed (-1: none may).
  int64_t unstamped_max_step = -1;
};
// nullopt when dir has no run.json; UserError naming the file when it is unreadable.
std::optional<RunIdentity> read_run_identity(const std::string& dir);
void write_run_identity(const std::string& dir, const RunIdentity& id);
std::string new_run_id();  // 16 random hex digits

// Appends the overrides given with --resume to overrides.txt under a comment line naming the
// step, and rewrites config.yaml to the config now in force; both atomically.
void record_resume_overrides(const std::string& dir, const RunConfig& config,
                             const std::vector<std::string>& overrides, int64_t step);

std::string checkpoint_path(const std::string& dir, int64_t step);

struct CheckpointRef {
  int64_t step = 0;
  std::string path;
};

// The ckpt_step{N}.safetensors in dir, by increasing N (none, or no dir: empty).
std::vector<CheckpointRef> list_checkpoints(const std::string& dir);
// The one with the largest N; nullopt when none (or no dir).
std::optional<CheckpointRef> find_latest_checkpoint(const std::string& dir);
// Deletes all but the `keep` newest checkpoints (keep 0: deletes none); returns the deleted.
std::vector<std::string> prune_checkpoints(const std::string& dir, int64_t keep);

}  // namespace kimi
