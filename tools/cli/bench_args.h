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

// Shapes: every size positive, and one [B, T, H, D] input within 2^31 elements (8 GiB of f32);
// a zero was a kernel-level internal error, a huge value an allocation failure.
inline void check_bench_sizes(const std::vector<int64_t>& seq_lens, int64_t batch, int64_t heads,
                              int64_t head_dim, int64_t tokens) {
  const auto positive = [](const char* flag, int64_t v) {
    if (v < 1) throw UserError(fmt::format("bench {}: must be at least 1 (got {})", flag, v));
  };
  positive("--batch", batch);
  positive("--heads", heads);
  positive("--head-dim", head_dim);
  positive("--tokens", tokens);
  if (seq_lens.empty()) throw UserError("bench --seq-lens: give at least one length");
  constexpr double kMaxElements = 2147483648.0;
  for (int64_t T : seq_lens) {
    positive("--seq-lens", T);
    const double elements = static_cast<double>(batch) * static_cast<double>(T) *
                            static_cast<double>(heads) * static_cast<double>(head_dim);
    if (elements > kMaxElements)
      throw UserError(fmt::format(
          "bench --seq-lens {}: --batch x T x --heads x --head-dim = {:.3g} elements a tensor, "
          "more than 2^31",
          T, elements));
  }
}

}  // namespace kimi::cli
