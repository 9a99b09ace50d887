// The run directory (Hydra's habit, STYLE.md item 12): out_dir/name holding the resolved
// config.yaml, the overrides as given (overrides.txt), metrics.csv, eval.csv and checkpoints
// named ckpt_step{N}.safetensors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "trainer/config.h"

namespace kimi {

// Creates `dir` (default: config.out_dir/config.name) and writes config.yaml (to_yaml) and
// overrides.txt (one per line), both atomically. Returns the directory. UserError on failure.
std::string create_run_dir(const RunConfig& config, const std::vector<std::string>& overrides,
                           const std::string& dir = "");

std::string checkpoint_path(const std::string& dir, int64_t step);

struct CheckpointRef {
  int64_t step = 0;
  std::string path;
};

// The ckpt_step{N}.safetensors in dir with the largest N; nullopt when none (or no dir).
std::optional<CheckpointRef> find_latest_checkpoint(const std::string& dir);

}  // namespace kimi
