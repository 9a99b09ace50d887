// Reading a scaling sweep back and analysing it (trainer/scaling_report.h); the text of the
// outputs is in scaling_report_text.cpp.
#include "trainer/scaling_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "trainer/sweep.h"
#include "trainer/sweep_results.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

// A run's CSV by column name, so files written before a column was added (or after) still read:
// the header and the rows, split on ',' (kimi-lab's cells hold no commas).
struct Csv {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  size_t column(const fs::path& path, const std::string& name, const std::string& why) const {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end())
      throw UserError(fmt::format("{}: no '{}' column; {}", path.string(), name, why));
    return static_cast<size_t>(it - header.begin());
  }
};

Csv read_csv(const fs::path& path, const std::string& why_needed) {
  std::ifstream in(path);
  if (!fs::exists(path) || !in)
    throw UserError(fmt::format("{}: missing; {}", path.string(), why_needed));
  auto split = [](const std::string& line) {
    std::vector<std::string> cells;
    size_t start = 0;
    for (size_t comma; (comma = line.find(',', start)) != std::string::npos; start = comma + 1)
      cells.push_back(line.substr(start, comma - start));
    cells.push_back(line.substr(start));
    return cells;
  };
  Csv csv;
  std::string line;
  if (std::getline(in, line)) csv.header = split(line);
  while (std::getline(in, line))
    if (!line.empty()) csv.rows.push_back(split(line));
  return csv;
}

double cell(const std::vector<std::string>& row, size_t i) {
  if (i >= row.size() || row[i].empty()) return kNaN;
  try {
    return std::stod(row[i]);
  } catch (const std::exception&) {
    return kNaN;
  }
}

nlohmann::json read_summary(const fs::path& dir) {
  std::ifstream in(dir / "summary.json");
  try {
    return nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  } catch (const nlohmann::json::exception& e) {
    throw UserError(fmt::format("{}: unreadable ({})", (dir / "summary.json").string(), e.what()));
  }
}

// metrics.csv's row for the last step: the trainer's cumulative tokens and FLOPs.
void read_compute(const fs::path& dir, ScalingRun& run) {
  const fs::path path = dir / "metrics.csv";
  const std::string why =
      "the training compute comes from its flops column at the last step (a run from before "
      "kimi-lab logged tokens and FLOPs cannot be placed on the compute axis)";
  const Csv t = read_csv(path, why);
  const size_t step = t.column(path, "step", why), tokens_col = t.column(path, "tokens", why),
               flops_col = t.column(path, "flops", why);
  const auto row = std::find_if(t.rows.rbegin(), t.rows.rend(), [&](const auto& r) {
    return cell(r, step) == static_cast<double>(run.steps);
  });
  const double tokens = row == t.rows.rend() ? kNaN : cell(*row, tokens_col);
  run.flops = row == t.rows.rend() ? kNaN : cell(*row, flops_col);
  if (!(std::isfinite(tokens) && tokens > 0 && std::isfinite(run.flops) && run.flops > 0))
    throw UserError(
        fmt::format("{}: no positive tokens and flops in the row of the last step "
                    "({}); {}",
                    path.string(), run.steps, why));
  run.tokens = static_cast<int64_t>(tokens);
}

// eval.csv's loss at the last step, on the slice at the training length when there are several.
void read_final_loss(const fs::path& dir, int64_t train_len, ScalingRun& run) {
  const fs::path path = dir / "eval.csv";
  const std::string why = "the point finished without a validation loss";
  const Csv t = read_csv(path, why);
  const size_t step = t.column(path, "step", why), len = t.column(path, "seq_len", why),
               loss = t.column(path, "loss", why);
  const std::vector<std::string>* pick = nullptr;
  for (const auto& r : t.rows) {
    if (cell(r, step) != static_cast<double>(run.steps)) continue;
    if (!pick || cell(r, len) == static_cast<double>(train_len)) pick = &r;
  }
  if (!pick)
    throw UserError(
        fmt::format("{}: no evaluation at the last step ({})", path.string(), run.steps));
  run.loss = cell(*pick, loss);
  if (!std::isfinite(run.loss) || run.loss <= 0)
    throw UserError(fmt::format(
        "{}: the validation loss at step {} is {}; a scaling fit needs a finite positive loss "
        "(delete the point's directory to retrain it)",
        path.string(), run.steps, loss < pick->size() ? (*pick)[loss] : "empty"));
}

std::vector<LossPoint> loss_points(const std::vector<ScalingRun>& runs,
                                   const std::vector<size_t>& which) {
  std::vector<LossPoint> out;
  for (size_t i : which) out.push_back({runs[i].pflops_days(), runs[i].loss});
  return out;
}

template <class Get>
Interval interval_of(const std::vector<PowerLawFit>& reps, double level, Get get) {
  std::vector<double> v;
  for (const auto& r : reps)
    if (r.ok) v.push_back(get(r.law));
  return percentile_interval(v, level);
}

int count_ok(const std::vector<PowerLawFit>& reps) {
  return static_cast<int>(std::count_if(reps.begin(), reps.end(), [](auto& r) { return r.ok; }));
}

// The ratio at `loss` over paired replicates (replicate i of each architecture).
void ratio_interval(const std::vector<PowerLawFit>& base, const std::vector<PowerLawFit>& other,
                    double loss, double level, Interval& ci, int& ok) {
  std::vector<double> v;
  for (size_t i = 0; i < std::min(base.size(), other.size()); ++i) {
    if (!base[i].ok || !other[i].ok) continue;
    const double r = compute_ratio_at_loss(base[i].law, other[i].law, loss);
    if (std::isfinite(r)) v.push_back(r);
  }
  ok = static_cast<int>(v.size());
  ci = percentile_interval(v, level);
}

}  // namespace

std::string scaling_arch(const RunConfig& config) {
  const std::vector<std::string> layers = layer_mixers(config.model);
  if (std::all_of(layers.begin(), layers.end(), [&](auto& m) { return m == layers.front(); }))
    return "all-" + layers.front();
  if (!config.model.hybrid.empty()) {
    std::string h = config.model.hybrid;
    h.erase(std::remove(h.begin(), h.end(), ' '), h.end());
    return h;
  }
  return fmt::format("{}", fmt::join(layers, "+"));
}

std::vector<ScalingRun> read_scaling_runs(const std::string& sweep_dir,
                                          std::vector<std::string>& skipped, int& points_total) {
  const std::vector<SweepPoint> points = load_sweep_points(sweep_dir);
  std::ifstream spec_in(fs::path(sweep_dir) / "sweep.json");
  points_total = static_cast<int>(
      nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(spec_in), {}))
          .value("points", nlohmann::json::array())
          .size());
  std::vector<ScalingRun> runs;
  for (const SweepPoint& p : points) {
    const PointState state = point_state(p);
    if (state != PointState::kDone && state != PointState::kStoppedEarly) {
      skipped.push_back(fmt::format("{} ({})", p.name, state_name(state)));
      continue;
    }
    ScalingRun run;
    run.name = p.name;
    run.dir = p.dir;
    try {
      run.arch = scaling_arch(p.config);
    } catch (const UserError& e) {
      throw UserError(fmt::format("{}/config.yaml: {}", p.dir, e.what()));
    }
    run.d_model = p.config.model.d_model;
    run.n_layers = p.config.model.n_layers;
    const nlohmann::json summary = read_summary(p.dir);
    run.steps = summary.value("steps_done", int64_t{0});
    run.params = summary.value("parameters", int64_t{0});
    read_compute(p.dir, run);
    read_final_loss(p.dir, p.config.train.seq_len, run);
    runs.push_back(std::move(run));
  }
  return runs;
}

namespace {

// Bootstrap replicates of one architecture: the saturating fits, then the paper's form.
using Replicates = std::pair<std::vector<PowerLawFit>, std::vector<PowerLawFit>>;

// FNV-1a of the architecture's name: its bootstrap stream depends on the seed and its own name
// only, so adding or removing another architecture leaves its intervals as they were.
uint64_t stream_of(const std::string& arch) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : arch) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// The envelope of one architecture's runs (marking them), both fits, and their intervals.
ArchFit fit_architecture(std::vector<ScalingRun>& runs, const std::string& arch,
                         const std::vector<size_t>& members, const ScalingOptions& o,
                         Replicates& reps) {
  ArchFit f;
  f.arch = arch;
  for (size_t k : lower_envelope(loss_points(runs, members))) {
    f.envelope.push_back(members[k]);
    runs[members[k]].on_envelope = true;
  }
  const std::vector<LossPoint> env = loss_points(runs, f.envelope);
  if (env.size() < 3)
    throw UserError(
        fmt::format("architecture {}: {} point(s) on its lower envelope ({} finished); the fit "
                    "L = a C^-b + c needs at least 3: finish more points of the sweep",
                    arch, env.size(), members.size()));
  f.compute_lo = env.front().compute;
  f.compute_hi = env.back().compute;
  f.saturating = fit_saturating_power_law(env);
  f.paper_form = fit_power_law(env);
  if (!f.saturating.ok || !f.paper_form.ok)
    throw UserError(
        fmt::format("architecture {}: the fit failed on its {} envelope points", arch, env.size()));
  const uint64_t seed = o.seed ^ stream_of(arch);
  auto& [sat, two] = reps;
  // With exactly as many points as parameters the curve interpolates them and every usable
  // resample is the same three points: an interval of zero width that would claim certainty.
  if (env.size() > 3) sat = bootstrap_fits(env, true, o.bootstrap, seed);
  two = bootstrap_fits(env, false, o.bootstrap, seed);
  f.a = interval_of(sat, o.level, [](const PowerLaw& p) { return p.a; });
  f.b = interval_of(sat, o.level, [](const PowerLaw& p) { return p.b; });
  f.c = interval_of(sat, o.level, [](const PowerLaw& p) { return p.c; });
  f.a2 = interval_of(two, o.level, [](const PowerLaw& p) { return p.a; });
  f.b2 = interval_of(two, o.level, [](const PowerLaw& p) { return p.b; });
  f.boot_ok = count_ok(sat);
  f.boot_ok2 = count_ok(two);
  return f;
}

// Ratio rows of `other` against `base` at three losses inside both envelopes' loss ranges, so
// that neither fit is extrapolated in loss; none when the ranges do not overlap.
void add_ratios(ScalingResult& r, const ArchFit& base, const ArchFit& other,
                const Replicates& base_reps, const Replicates& other_reps) {
  auto loss_range = [&](const ArchFit& f) {
    return std::pair{r.runs[f.envelope.back()].loss, r.runs[f.envelope.front()].loss};
  };
  const double lo = std::max(loss_range(base).first, loss_range(other).first);
  const double hi = std::min(loss_range(base).second, loss_range(other).second);
  if (!(lo < hi)) return;
  for (double q : {0.2, 0.5, 0.8}) {
    RatioRow row;
    row.base = base.arch;
    row.other = other.arch;
    row.loss = hi - q * (hi - lo);
    row.ratio = compute_ratio_at_loss(base.saturating.law, other.saturating.law, row.loss);
    row.ratio2 = compute_ratio_at_loss(base.paper_form.law, other.paper_form.law, row.loss);
    ratio_interval(base_reps.first, other_reps.first, row.loss, r.options.level, row.ci,
                   row.boot_ok);
    ratio_interval(base_reps.second, other_reps.second, row.loss, r.options.level, row.ci2,
                   row.boot_ok2);
    r.ratios.push_back(row);
  }
}

}  // namespace

ScalingResult analyse_scaling(std::vector<ScalingRun> runs, const ScalingOptions& o) {
  ScalingResult r;
  r.options = o;
  r.runs = std::move(runs);
  if (r.runs.empty()) throw UserError("no finished point: nothing to fit");
  std::map<std::string, std::vector<size_t>> by_arch;
  for (size_t i = 0; i < r.runs.size(); ++i) {
    const ScalingRun& run = r.runs[i];
    if (!(std::isfinite(run.flops) && run.flops > 0 && std::isfinite(run.loss) && run.loss > 0))
      throw UserError(fmt::format("point {}: compute {} and loss {} must be finite and positive",
                                  run.name, run.flops, run.loss));
    by_arch[run.arch].push_back(i);
  }
  std::map<std::string, Replicates> reps;
  for (const auto& [arch, members] : by_arch)
    r.fits.push_back(fit_architecture(r.runs, arch, members, o, reps[arch]));
  r.baseline = by_arch.count("all-mla") ? "all-mla" : r.fits.front().arch;
  const ArchFit& base = *std::find_if(r.fits.begin(), r.fits.end(),
                                      [&](const ArchFit& f) { return f.arch == r.baseline; });
  for (const ArchFit& other : r.fits)
    if (other.arch != r.baseline) add_ratios(r, base, other, reps[base.arch], reps[other.arch]);
  return r;
}

ScalingResult write_scaling_report(const std::string& sweep_dir, const std::string& out_dir,
                                   const ScalingOptions& options) {
  std::vector<std::string> skipped;
  int total = 0;
  std::vector<ScalingRun> runs = read_scaling_runs(sweep_dir, skipped, total);
  if (runs.empty())
    throw UserError(fmt::format("{}: no point has finished yet ({} of {} points); nothing to fit",
                                sweep_dir, 0, total));
  ScalingResult r = analyse_scaling(std::move(runs), options);
  r.sweep_dir = sweep_dir;
  r.skipped = std::move(skipped);
  r.points_total = total;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw UserError(fmt::format("--out {}: cannot create ({})", out_dir, ec.message()));
  const fs::path out(out_dir);
  io::write_file_atomic((out / "scaling_points.csv").string(), scaling_points_csv(r));
  io::write_file_atomic((out / "scaling_fit.csv").string(), scaling_fit_csv(r));
  io::write_file_atomic((out / "scaling_ratio.csv").string(), scaling_ratio_csv(r));
  io::write_file_atomic((out / "report.md").string(), scaling_report_md(r));
  return r;
}

}  // namespace kimi
