// A sweep's results read back from its run directories: one SweepRun per finished or failed
// point, and the statistics over the seeds of one setting (SweepPoint::group). summary.csv,
// the report (trainer/report.h) and the plots all aggregate the same way: a setting's result is
// the mean over its seeds, shown with its standard deviation and count, never one seed's best.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "trainer/sweep.h"

namespace kimi {

struct SweepRun {
  const SweepPoint* point = nullptr;
  PointState state = PointState::kPending;
  std::optional<int64_t> steps_done;
  std::optional<double> final_loss, wall_s;
  std::map<int64_t, std::pair<double, double>> last;  // seq_len -> (accuracy, exact match)
  std::map<int64_t, double> best;                     // seq_len -> best accuracy over steps
  std::map<int64_t, std::vector<std::pair<int64_t, double>>> curve;  // seq_len -> (step, acc)
  std::string error;                                                 // failed.txt
};

// The finished (done, stopped early) and failed points, in point order.
std::vector<SweepRun> read_sweep_runs(const std::vector<SweepPoint>& points);

struct SeedStat {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double sd = std::numeric_limits<double>::quiet_NaN();  // sample sd (n - 1); NaN when n < 2
  int n = 0;
};
SeedStat seed_stat(const std::vector<double>& values);

// group -> its runs, in point order.
std::map<std::string, std::vector<const SweepRun*>> seed_groups(const std::vector<SweepRun>& runs);

// The length a run is judged at when an lr is chosen: its training length when it was evaluated
// there (the paper scores each model at the length it was trained at), else its longest one.
int64_t selection_length(const SweepRun& run);

// The group's mean, sd and count over seeds of the best accuracy at selection_length.
SeedStat selection_stat(const std::vector<const SweepRun*>& group);

// The groups that hold the best lr of their family (the runs whose grid values agree on every
// key but train.lr and the seed): the highest selection_stat mean, never one seed's maximum.
// Ties go to the first group in name order.
std::set<std::string> best_lr_groups(
    const std::map<std::string, std::vector<const SweepRun*>>& groups);

// The points of an existing sweep directory, from its sweep.json, with each started point's
// config read from its own config.yaml (points never started are left out). UserError when the
// directory has no readable sweep.json. `total`, when given, receives the sweep's whole point
// count, started or not (a report says how much of the grid it covers).
std::vector<SweepPoint> load_sweep_points(const std::string& sweep_dir, size_t* total = nullptr);

}  // namespace kimi
