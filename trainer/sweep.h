// Sweeps behind `kimi-lab sweep SWEEP.yaml`: a base config, overrides for every run, and a grid
// (cartesian product, in file order) of key -> values, one run directory per point. The grid is
// validated whole before any run starts; a re-run skips finished points and resumes interrupted
// ones; summary.csv holds one row per run with dotted config columns (zoology, W&B habit;
// STYLE.md item 13). The paper's sweeps: docs/paper.md#synthetic-tasks and docs/paper.md#ablations.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "trainer/config.h"

namespace kimi {

// The sweep file, decoded strictly (sweep_spec.cpp):
//   base: experiments/quickstart.yaml   # relative to the sweep file; absent = built-in defaults
//   name: sweep_quick                   # absent = the sweep file's stem
//   out_dir: runs                       # the sweep directory is out_dir/name
//   overrides: [train.steps=300]        # applied to every run
//   grid: {model.mixer: [kda, gdn], train.lr: [1.0e-3, 3.0e-3]}
//   seeds: [0, 1]                       # sugar for a last grid axis train.seed
//   rows:                               # named override sets: the first grid axis, `row`
//     no_gate: [model.output_gate=none]
//   when:                               # extra overrides for the points that match
//     - match: {train.seq_len: 1024}
//       overrides: [train.target_accuracy=0]
struct SweepAxis {
  std::string key;                  // dotted config key
  std::vector<std::string> values;  // each as override text: `0.003`, `[kda, attention]`
  std::vector<std::string> labels;  // each as it appears in run names: `0.003`, `kda+attention`
  // The `rows` axis only (key kRowKey): each row's overrides, which its points get instead of
  // `row=<label>` (row is no config key).
  std::vector<std::vector<std::string>> row_overrides;
};

// Points whose grid values equal every `match` entry get `overrides` after their own key=value
// (Figure 4: the runs at length 1024 train all steps, the others stop at 99.5%).
struct SweepCase {
  std::vector<std::pair<std::string, std::string>> match;  // grid key -> value label
  std::vector<std::string> overrides;
};

// The grid axis that repeats a point with another seed: the seed groups of summary.csv, the
// plots and the report average over it.
inline constexpr const char* kSeedKey = "train.seed";

// The grid axis made from `rows:`: settings that differ in several keys at once (the paper's
// Table 1: hybrid ratios beside gate and conv ablations), which a cartesian grid cannot list.
inline constexpr const char* kRowKey = "row";

struct SweepSpec {
  std::string file;  // the sweep file as given
  std::string base;  // the base config's path (resolved against the sweep file), "" = defaults
  std::string name;
  std::string out_dir = "runs";
  std::vector<std::string> overrides;
  std::vector<SweepAxis> grid;  // `seeds:` is its last axis, train.seed
  std::vector<SweepCase> cases;

  std::string dir() const;  // out_dir/name
};

// Reads and checks the sweep file (unknown keys, empty axes, duplicate keys, name/out_dir in the
// grid). Does not look at the config keys themselves: validate_points does, with load_config.
SweepSpec load_sweep_spec(const std::string& path);

struct SweepPoint {
  int index = 0;
  std::string name;   // `mixer=gdn,lr=0.003`
  std::string group;  // the name without its seed part: the runs that differ only in seed
  std::vector<std::pair<std::string, std::string>> values;  // grid key -> override text
  // sweep overrides, the point's key=value, matching `when` overrides, name=, out_dir=
  std::vector<std::string> overrides;
  std::string dir;   // <sweep dir>/<name>
  RunConfig config;  // filled by validate_points
};

// The cartesian product of the grid, the last key varying fastest (a grid with no keys is one
// point named `run`). Names are `<short key>=<label>` joined by ',', filesystem-safe; the short
// key is the last dotted part, or the whole key when two grid keys share it. UserError when two
// points get the same name.
std::vector<SweepPoint> expand_grid(const SweepSpec& spec);

// load_config(base, overrides) for every point, filling point.config. The first bad point throws
// UserError naming the point and the key ("sweep point 2 (mixer=foo,lr=0.001): model.mixer: ...").
void validate_points(const SweepSpec& spec, std::vector<SweepPoint>& points);

// The resolved spec stored as <sweep dir>/sweep.json: grid, overrides and every point's config.
nlohmann::json spec_json(const SweepSpec& spec, const std::vector<SweepPoint>& points);

// "" when `stored` (a sweep.json) describes the same runs as `current`, else the first difference
// in words ("grid train.lr: [0.001, 0.003] -> [0.001]"). Config keys present in only one of them
// (a key added to kimi-lab since) do not count.
std::string spec_difference(const nlohmann::json& stored, const nlohmann::json& current);

// Where a point stands on disk.
enum class PointState {
  kPending,       // no run directory (or no config.yaml in it)
  kInterrupted,   // a run directory, not finished: resumed from its latest checkpoint
  kDone,          // summary.json with steps_done == train.steps
  kStoppedEarly,  // summary.json with stopped_early (train.target_accuracy reached)
  kFailed,        // failed.txt (written when its training threw: a non-finite loss, ...)
};
PointState point_state(const SweepPoint& point);
const char* state_name(PointState state);  // pending, interrupted, done, stopped_early, failed

// `--shard I/N`: this process takes the points whose index is I modulo N (after --only), so N
// processes on one or several machines split a sweep without overlap.
struct Shard {
  int index = 0, count = 1;
};
// "I/N" with 0 <= I < N; anything else is one UserError naming --shard.
Shard parse_shard(const std::string& text);

struct SweepOptions {
  std::string device;     // "" = each config's train.device
  std::vector<int> only;  // point indices to train this time (empty = all)
  Shard shard;            // the share of the (--only) points this process takes
  // Write summary.csv / summary.jsonl from the run directories present and train nothing: the
  // merge step after shards ran on other machines and their point directories were copied in.
  bool summarize = false;
  bool dry_run = false;  // fill the report (points, states); write and train nothing
  bool force = false;    // accept a changed sweep file: keep unchanged points, retrain the rest
  bool progress = true;  // a progress bar per run on a terminal
  int64_t stop_at = 0;   // > 0: checkpoint and stop every point at this step (resume later)
  // Points trained at once, each in its own process (jobs > 1 needs worker_command). When the
  // user has not set CUDA_VISIBLE_DEVICES and the driver lists n > 1 GPUs, child slot k gets
  // CUDA_VISIBLE_DEVICES=k mod n; otherwise the children share the device. Children split the
  // CPU cores (OMP_NUM_THREADS = cores / jobs unless it is set). SIGINT/SIGTERM are passed on
  // to the children, whose points then resume from their last checkpoint.
  int jobs = 1;
  // With jobs > 1: run the children under a CUDA MPS daemon (trainer/mps_daemon.h; the one of
  // CUDA_MPS_PIPE_DIRECTORY, or a private one for the sweep's lifetime) so that they share the
  // GPU at once instead of time-slicing it.
  bool mps = false;
  // The command that trains one point in a child process; the parent appends
  // `SWEEP_FILE --worker-point I [--device D] [--stop-at N]` (kimi-lab: {exe, "sweep"}).
  std::vector<std::string> worker_command;
};

enum class PointAction { kSkipped, kTrained, kResumed, kFailed, kNotSelected };

struct SweepReport {
  SweepSpec spec;
  std::vector<SweepPoint> points;
  std::vector<PointState> states;          // one per point, as found before training
  std::vector<PointAction> actions;        // one per point, what this call did
  std::string spec_change;                 // spec_difference against the stored sweep.json
  std::vector<std::string> finished_dirs;  // run dirs in summary.csv (done, stopped, failed)
  std::vector<std::string> failures;       // "name: message" for points that failed this time
  std::vector<std::string> locked;         // points skipped because another process holds them
  // --jobs > 1: the signal (SIGINT, SIGTERM) that stopped the sweep after it was passed to the
  // children; 0 when none came. The caller ends the process with it (tools/cli/sweep_command).
  int interrupted_by = 0;
  double wall_s = 0;
};

// Validates, checks the sweep directory against the stored spec, trains the selected points in
// order (skipping finished ones, resuming interrupted ones), and rewrites summary.csv and
// summary.jsonl after each point. With dry_run it stops after filling points, states and
// spec_change. A point whose training throws is marked failed (failed.txt) and the sweep goes
// on; delete its directory to train it again. Plots are left to the caller
// (tools/cli/sweep_command.cpp).
// Locks: a shared DirLock on the sweep directory for the whole call (several sweep processes
// with disjoint --only may share it) and an exclusive one on each point's directory while it
// trains; a point held by another process is skipped (SweepReport::locked), not failed.
SweepReport run_sweep(const std::string& sweep_file, const SweepOptions& options);

// The child side of --jobs: trains (or resumes, or skips when finished) point `index` of an
// existing sweep directory under the same locks, with no summaries or plots (the parent writes
// them). Returns the exit status: 0 trained or already finished, 1 failed (failed.txt written),
// 4 held by another process. UserError when the sweep changed since the parent stored it.
int run_sweep_point(const std::string& sweep_file, int index, const SweepOptions& options);
inline constexpr int kPointLockedStatus = 4;

// The points this call takes: --only (all when empty) intersected with the shard. UserError
// naming --only for an index outside the sweep.
std::vector<bool> chosen_points(const SweepOptions& options, size_t n);

// Rewrites <sweep dir>/summary.csv and summary.jsonl from the run directories of `points`
// (finished and failed ones; others are left out). Returns the directories of the rows.
std::vector<std::string> write_sweep_summary(const std::string& sweep_dir,
                                             const std::vector<SweepPoint>& points);

}  // namespace kimi
