// Argument checks of `kimi-lab bench`, header-only so tests/bench_args_test.cpp can call them
// without linking the command line's sources.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "core/tensor/error.h"

namespace kimi::cli {

// The mixer ops both devices can time (run_mixer in bench_command.cpp, run in bench_cuda.cpp).
// Any other name would silently be timed as DeltaNet under that label.
inline const std::vector<std::string>& benched_mixers() {
  static const std::vector<std::string> names = {"kda", "gdn", "deltanet", "mamba2", "attention"};
  return names;
}

// Throws a one-line UserError naming the flag; called before any work on either device.
inline void check_bench_args(const std::vector<std::string>& mixers, int reps) {
  if (reps < 1) throw UserError(fmt::format("bench --reps: must be at least 1 (got {})", reps));
  const std::vector<std::string>& valid = benched_mixers();
  for (const std::string& m : mixers) {
    if (std::find(valid.begin(), valid.end(), m) != valid.end()) continue;
    std::string list;
    for (const std::string& v : valid) list += (list.empty() ? "" : ", ") + v;
    throw UserError(fmt::format("bench --mixers: '{}' is not benchmarked ({})", m, list));
  }
}

}  // namespace kimi::cli
