// Internal to trainer/sweep*.cpp: what run_sweep (sweep.cpp), a point's visit (sweep_point.cpp),
// the in-process loop (sweep_in_process.cpp), the --jobs parent (sweep_workers.cpp) and the
// summaries (sweep_summary.cpp) share. The visit under a point's lock and --jobs itself are
// declared in trainer/sweep_workers.h.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "trainer/sweep.h"

namespace kimi::sweep_detail {

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The keys where the run directory's config.yaml disagrees with the point's config ("" = none).
std::string run_dir_difference(const SweepPoint& p);

// Points this call has to visit: chosen ones not finished (or stale under --force).
std::vector<size_t> points_to_visit(const SweepReport& rep, const std::vector<bool>& chosen,
                                    const std::vector<bool>& stale);

// --jobs 1: one point after another in this process, the summaries rewritten after each.
void run_in_process(SweepReport& rep, const std::vector<bool>& chosen,
                    const std::vector<bool>& stale, const SweepOptions& opt);

}  // namespace kimi::sweep_detail
