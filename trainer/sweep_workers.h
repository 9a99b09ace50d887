// Internal to trainer/sweep*.cpp: visiting one point under its lock, and `--jobs N`, which trains
// N points at once in child processes (each `kimi-lab sweep FILE --worker-point I`, logging to
// the point's worker.log) while the parent schedules them, rewrites the summaries and shows
// progress. Processes rather than threads: the CPU backend's OpenMP pool and the CUDA context are
// per process, and a crash in one point cannot take the others down.
#pragma once

#include <string>
#include <vector>

#include "trainer/sweep.h"

namespace kimi::sweep_detail {

struct PointOutcome {
  PointAction action = PointAction::kSkipped;
  std::string failure;  // set when the point failed
  bool locked = false;  // another process holds the point's directory
};

// Takes the exclusive lock on the point's directory (skips the point when another process holds
// it), looks at its state again under the lock, clears it when `stale` (--force on a changed
// config), then trains, resumes or skips it. A failure is written to failed.txt.
PointOutcome visit_point_locked(const SweepSpec& spec, const SweepPoint& point, bool stale,
                                const SweepOptions& options, const std::string& tag);

// Trains the points `todo` (indices into rep.points) in options.jobs child processes; fills
// rep.actions, rep.failures, rep.locked and rewrites the summaries after every point.
void run_in_workers(SweepReport& rep, const std::vector<size_t>& todo,
                    const std::vector<bool>& stale, const std::string& sweep_file,
                    const SweepOptions& options);

// The GPU ids handed to the children, child slot k getting ids[k % size]: none (every child
// inherits the environment and shares the device) when the user set CUDA_VISIBLE_DEVICES
// (`cuda_visible_devices` non-null) or fewer than two GPUs are visible; else 0..driver_gpus-1.
std::vector<std::string> gpus_to_hand_out(const char* cuda_visible_devices, size_t driver_gpus);

// The number of GPUs the NVIDIA driver lists (/proc/driver/nvidia/gpus); 0 without a driver.
size_t driver_gpu_count();

// "3/12 points done, 2 running, ETA 14 min (5 min elapsed)"; the ETA comes from the mean time of
// the points trained so far, `jobs` at once.
std::string progress_text(size_t done, size_t total, size_t running, double elapsed_s,
                          double mean_point_s, int jobs);
std::string duration_text(double seconds);

}  // namespace kimi::sweep_detail
