// `kimi-lab scaling SWEEP_DIR`: a sweep of model sizes x token budgets x architectures read back
// as (training compute, final validation loss) points, the lower envelope per architecture, the
// fits of trainer/scaling_fit.h with bootstrap intervals, the compute ratio at equal loss, and
// the paper's Figure 5 fits beside them (DESIGN.md section 7: loss = a C^-b, C in PFLOP/s-days).
// C is the trainer's own count, metrics.csv's cumulative `flops` at the last step
// (trainer/lm_metrics.h: 6 x matmul parameters + attention and state terms, per token trained).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/config.h"
#include "trainer/scaling_fit.h"

namespace kimi {

inline constexpr double kFlopsPerPflopsDay = 1e15 * 86400;

struct ScalingRun {
  std::string name, dir;
  std::string arch;  // all-mla, kda:mla=3:1, ... (scaling_arch)
  int64_t d_model = 0, n_layers = 0, params = 0, steps = 0, tokens = 0;
  double flops = 0;  // training compute, FLOPs
  double loss = 0;   // validation loss at the last step, nats per token
  bool on_envelope = false;
  double pflops_days() const { return flops / kFlopsPerPflopsDay; }
};

struct ArchFit {
  std::string arch;
  std::vector<size_t> envelope;        // indices into ScalingResult::runs, by increasing compute
  PowerLawFit saturating, paper_form;  // a C^-b + c and a C^-b, C in PFLOP/s-days
  Interval a, b, c, a2, b2;            // bootstrap intervals (a2, b2: the paper's form)
  int boot_ok = 0, boot_ok2 = 0;       // replicates whose fit succeeded
  double compute_lo = kNaN, compute_hi = kNaN;  // the envelope's compute range, PFLOP/s-days
};

// C_base(L) / C_other(L) at one loss inside both envelopes' loss ranges.
struct RatioRow {
  std::string base, other;
  double loss = kNaN;
  double ratio = kNaN, ratio2 = kNaN;  // saturating fits; the paper's two-parameter form
  Interval ci, ci2;
  int boot_ok = 0, boot_ok2 = 0;  // replicate pairs where both curves reach the loss
};

struct ScalingOptions {
  int bootstrap = 1000;  // replicates; 0 = no intervals
  uint64_t seed = 0;
  double level = 0.95;  // of the percentile intervals
};

struct ScalingResult {
  std::string sweep_dir;
  ScalingOptions options;
  int points_total = 0;              // in sweep.json
  std::vector<ScalingRun> runs;      // finished points
  std::vector<std::string> skipped;  // "name (state)" of points not finished
  std::vector<ArchFit> fits;         // one per architecture, by name
  std::vector<RatioRow> ratios;      // each other architecture against the baseline
  std::string baseline;              // all-mla when present, else the first architecture
};

// The architecture of a model config as one word: all-<mixer> when every layer has the same
// mixer, the model.hybrid rule when there is one (kda:mla=3:1), else the mixers joined by '+'.
std::string scaling_arch(const RunConfig& config);

// The finished points of a sweep directory (sweep.json, each run's config.yaml, summary.json,
// metrics.csv, eval.csv). UserError, one line naming the point and file: a finished run without
// eval.csv, without a metrics.csv row for its last step that carries tokens and flops, or with
// a non-finite or non-positive loss or compute. Points not finished go to `skipped`.
std::vector<ScalingRun> read_scaling_runs(const std::string& sweep_dir,
                                          std::vector<std::string>& skipped, int& points_total);

// Envelopes, fits, intervals and ratios over runs read elsewhere (no I/O). UserError when there
// are no runs, or an architecture's envelope has fewer points than a C^-b + c has parameters.
ScalingResult analyse_scaling(std::vector<ScalingRun> runs, const ScalingOptions& options);

std::string scaling_points_csv(const ScalingResult& r);
std::string scaling_fit_csv(const ScalingResult& r);
std::string scaling_ratio_csv(const ScalingResult& r);
std::string scaling_report_md(const ScalingResult& r);

// read_scaling_runs + analyse_scaling, then scaling_points.csv, scaling_fit.csv,
// scaling_ratio.csv and report.md written atomically into out_dir (created if missing).
ScalingResult write_scaling_report(const std::string& sweep_dir, const std::string& out_dir,
                                   const ScalingOptions& options);

}  // namespace kimi
