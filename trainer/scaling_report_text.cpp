// The files of `kimi-lab scaling` (trainer/scaling_report.h): three tidy CSVs (STYLE.md item 13)
// that tools/plot_scaling.py draws, and report.md with the paper's Figure 5 fits beside ours
// (DESIGN.md section 7).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "trainer/metrics_writer.h"
#include "trainer/scaling_report.h"

namespace kimi {
namespace {

// The paper's fits, loss = a C^-b with C in PFLOP/s-days (DESIGN.md section 7).
struct PaperFit {
  const char* arch;
  const char* name;
  double a, b;
};
constexpr PaperFit kPaper[] = {{"all-mla", "MLA", 2.3092, 0.0536},
                               {"kda:mla=3:1", "Kimi Linear", 2.2879, 0.0527}};
constexpr double kPaperRatio = 1.16;

const PaperFit* paper_fit(const std::string& arch) {
  for (const PaperFit& p : kPaper)
    if (arch == p.arch) return &p;
  return nullptr;
}

CsvValue num(double v) { return std::isfinite(v) ? CsvValue(v) : CsvValue(std::string()); }

std::string g(double v, int digits = 4) {
  return std::isfinite(v) ? fmt::format("{:.{}g}", v, digits) : "-";
}

std::string with_ci(double v, const Interval& ci, int digits = 4) {
  if (!std::isfinite(ci.lo)) return g(v, digits);
  return fmt::format("{} [{}, {}]", g(v, digits), g(ci.lo, digits), g(ci.hi, digits));
}

template <class T, class Get>
std::pair<T, T> range_of(const std::vector<ScalingRun>& runs, Get get) {
  T lo = get(runs.front()), hi = lo;
  for (const auto& r : runs) lo = std::min(lo, get(r)), hi = std::max(hi, get(r));
  return {lo, hi};
}

std::string fit_table(const ScalingResult& r) {
  std::string md =
      "| architecture | envelope points | compute range (PFLOP/s-days) | a | b | c | rms log "
      "residual | two-parameter a C^-b: a | b | paper (a C^-b) |\n|---|---|---|---|---|---|---|---|"
      "---|---|\n";
  for (const ArchFit& f : r.fits) {
    const PaperFit* p = paper_fit(f.arch);
    md += fmt::format("| {} | {} | {} - {} | {} | {} | {} | {} | {} | {} | {} |\n", f.arch,
                      f.envelope.size(), g(f.compute_lo, 3), g(f.compute_hi, 3),
                      with_ci(f.saturating.law.a, f.a), with_ci(f.saturating.law.b, f.b),
                      with_ci(f.saturating.law.c, f.c), g(f.saturating.rms_log, 3),
                      with_ci(f.paper_form.law.a, f.a2), with_ci(f.paper_form.law.b, f.b2),
                      p ? fmt::format("{}: {} C^-{}", p->name, p->a, p->b) : std::string("-"));
  }
  return md;
}

std::string ratio_table(const ScalingResult& r) {
  if (r.ratios.empty())
    return fmt::format("No compute ratio: {}.\n",
                       r.fits.size() < 2
                           ? "the sweep has one architecture"
                           : "the architectures' envelopes share no range of loss, so one of the "
                             "fits would be extrapolated");
  std::string md = fmt::format(
      "Compute ratio at equal loss, C_{}(L) / C_other(L): how many times more training compute "
      "the baseline needs to reach the loss L that the other architecture reaches (> 1: the other "
      "is more compute-efficient). The levels lie inside both envelopes' loss ranges.\n\n"
      "| other | loss L | ratio, a C^-b + c | ratio, a C^-b | replicates (both reach L) |\n"
      "|---|---|---|---|---|\n",
      r.baseline);
  for (const RatioRow& row : r.ratios)
    md += fmt::format("| {} | {} | {} | {} | {} / {} |\n", row.other, g(row.loss, 4),
                      with_ci(row.ratio, row.ci, 3), with_ci(row.ratio2, row.ci2, 3), row.boot_ok,
                      row.boot_ok2);
  const PaperFit& m = kPaper[0];
  const PaperFit& k = kPaper[1];
  md += fmt::format(
      "\nThe paper: {:.2f}x (Kimi Linear against MLA, read off its fits {} C^-{} and {} C^-{}; "
      "from those fits the ratio at the loss Kimi Linear reaches with 1 PFLOP/s-day is {:.3f}).\n",
      kPaperRatio, m.a, m.b, k.a, k.b,
      compute_ratio_at_loss({m.a, m.b, 0}, {k.a, k.b, 0}, PowerLaw{k.a, k.b, 0}.loss_at(1.0)));
  return md;
}

}  // namespace

std::string scaling_points_csv(const ScalingResult& r) {
  CsvTable t("scaling_points.csv", {"arch", "run", "d_model", "n_layers", "params", "steps",
                                    "tokens", "flops", "pflops_days", "loss", "on_envelope"});
  for (const ScalingRun& run : r.runs)
    t.add_row({run.arch, run.name, run.d_model, run.n_layers, run.params, run.steps, run.tokens,
               run.flops, run.pflops_days(), run.loss, int64_t{run.on_envelope}});
  return t.to_csv();
}

std::string scaling_fit_csv(const ScalingResult& r) {
  CsvTable t("scaling_fit.csv",
             {"arch", "form", "a", "a_lo", "a_hi", "b", "b_lo", "b_hi", "c", "c_lo", "c_hi",
              "rms_log", "envelope_points", "bootstrap", "bootstrap_ok", "level",
              "compute_lo_pflops_days", "compute_hi_pflops_days"});
  for (const ArchFit& f : r.fits) {
    const int64_t n = static_cast<int64_t>(f.envelope.size());
    const PowerLaw& s = f.saturating.law;
    t.add_row({f.arch, std::string("a*C^-b+c"), num(s.a), num(f.a.lo), num(f.a.hi), num(s.b),
               num(f.b.lo), num(f.b.hi), num(s.c), num(f.c.lo), num(f.c.hi),
               num(f.saturating.rms_log), n, int64_t{r.options.bootstrap}, int64_t{f.boot_ok},
               r.options.level, num(f.compute_lo), num(f.compute_hi)});
    const PowerLaw& p = f.paper_form.law;
    t.add_row({f.arch, std::string("a*C^-b"), num(p.a), num(f.a2.lo), num(f.a2.hi), num(p.b),
               num(f.b2.lo), num(f.b2.hi), 0.0, 0.0, 0.0, num(f.paper_form.rms_log), n,
               int64_t{r.options.bootstrap}, int64_t{f.boot_ok2}, r.options.level,
               num(f.compute_lo), num(f.compute_hi)});
  }
  return t.to_csv();
}

std::string scaling_ratio_csv(const ScalingResult& r) {
  CsvTable t("scaling_ratio.csv", {"base", "other", "loss", "ratio", "ratio_lo", "ratio_hi",
                                   "ratio_two_param", "ratio_two_param_lo", "ratio_two_param_hi",
                                   "bootstrap_ok", "bootstrap_ok_two_param"});
  for (const RatioRow& row : r.ratios)
    t.add_row({row.base, row.other, row.loss, num(row.ratio), num(row.ci.lo), num(row.ci.hi),
               num(row.ratio2), num(row.ci2.lo), num(row.ci2.hi), int64_t{row.boot_ok},
               int64_t{row.boot_ok2}});
  return t.to_csv();
}

std::string scaling_report_md(const ScalingResult& r) {
  const auto [p_lo, p_hi] = range_of<int64_t>(r.runs, [](auto& x) { return x.params; });
  const auto [t_lo, t_hi] = range_of<int64_t>(r.runs, [](auto& x) { return x.tokens; });
  const auto [c_lo, c_hi] = range_of<double>(r.runs, [](auto& x) { return x.pflops_days(); });
  std::set<std::pair<int64_t, int64_t>> sizes;
  for (const auto& x : r.runs) sizes.insert({x.d_model, x.n_layers});
  std::string md = fmt::format("# Scaling law (the paper's Figure 5, scaled down): {}\n\n",
                               r.sweep_dir.empty() ? "sweep" : r.sweep_dir);
  md += fmt::format(
      "**This is a scaled-down replication.** {} finished runs of {} points: {} model sizes "
      "(d_model x layers: {}), {:.3g}M to {:.3g}M parameters, trained on {:.3g}M to {:.3g}M "
      "tokens, {:.3g} to {:.3g} PFLOP/s-days ({:.3g} to {:.3g} FLOPs). The paper's models and "
      "token counts are orders of magnitude larger, and its loss is on its own data and "
      "tokenizer, so the level of our losses (and with it a and c) does not compare with the "
      "paper's; the exponent b and the compute ratio at equal loss are what can be set side by "
      "side, and even they may change with scale.\n\n",
      r.runs.size(), r.points_total, sizes.size(),
      fmt::join(
          [&] {
            std::vector<std::string> v;
            for (auto [d, l] : sizes) v.push_back(fmt::format("{}x{}", d, l));
            return v;
          }(),
          ", "),
      p_lo / 1e6, p_hi / 1e6, t_lo / 1e6, t_hi / 1e6, c_lo, c_hi, c_lo * kFlopsPerPflopsDay,
      c_hi * kFlopsPerPflopsDay);
  md += "## Fits on each architecture's lower envelope (C in PFLOP/s-days)\n\n" + fit_table(r);
  if (r.options.bootstrap == 0)
    md += "\nNo intervals (--bootstrap 0).\n\n";
  else
    md += fmt::format(
        "\nIntervals: {}% percentile bootstrap, {} replicates (seed {}), each a resample with "
        "replacement of the envelope points, refitted.{}\n\n",
        r.options.level * 100, r.options.bootstrap, r.options.seed,
        std::any_of(r.fits.begin(), r.fits.end(), [](auto& f) { return f.envelope.size() == 3; })
            ? " An architecture with only 3 envelope points has no interval for a C^-b + c: the "
              "curve passes through all three, and every resample repeats them."
            : "");
  if (r.options.bootstrap > 0 &&
      std::any_of(r.fits.begin(), r.fits.end(), [](auto& f) { return f.envelope.size() < 6; }))
    md +=
        "With fewer than 6 envelope points the resamples can take only a few distinct forms, so "
        "the intervals are coarse (and the same for most seeds).\n\n";
  md += "## Compute ratio at equal loss\n\n" + ratio_table(r);
  md +=
      "\n## Method\n\n"
      "- **Compute** C is the trainer's own count at the last step (metrics.csv `flops`: per "
      "token trained, 6 x the parameters used in products, plus the attention and recurrent-state "
      "terms; trainer/lm_metrics.h), divided by 8.64e19 FLOPs per PFLOP/s-day. **Loss** is the "
      "validation loss (nats per token) at the last step (eval.csv).\n"
      "- **Lower envelope**: per architecture, the runs whose loss is below that of every run "
      "with less or equal compute (marked `on_envelope` in scaling_points.csv). Only these are "
      "fitted, as the paper fits the compute-efficient frontier.\n"
      "- **Fit** of L(C) = a C^-b + c by least squares on log L: c is profiled over [0, min L) "
      "(for each c, a and b by the closed-form least-squares line of log(L - c) on log C; a grid "
      "and a golden-section search pick c), then Levenberg-Marquardt polishes (log a, b, c) "
      "together. The paper's form a C^-b is the straight line of log L on log C.\n"
      "- **Compute ratio** C_base(L) / C_other(L) = ((L - c_base) / a_base)^(-1/b_base) / "
      "((L - c_other) / a_other)^(-1/b_other), with its interval over paired replicates.\n";
  md += fmt::format(
      "\n## Points\n\n| architecture | run | parameters | tokens | PFLOP/s-days | "
      "loss | envelope |\n|---|---|---|---|---|---|---|\n");
  for (const ArchFit& f : r.fits)
    for (const ScalingRun& x : r.runs)
      if (x.arch == f.arch)
        md += fmt::format("| {} | {} | {} | {} | {} | {:.4f} | {} |\n", x.arch, x.name, x.params,
                          x.tokens, g(x.pflops_days(), 4), x.loss, x.on_envelope ? "yes" : "");
  if (!r.skipped.empty())
    md += fmt::format("\nStarted but not finished, left out: {}.\n", fmt::join(r.skipped, ", "));
  const int not_started =
      r.points_total - static_cast<int>(r.runs.size()) - static_cast<int>(r.skipped.size());
  if (not_started > 0) md += fmt::format("\n{} point(s) not started yet.\n", not_started);
  md +=
      "\nFiles: scaling_points.csv (every finished run), scaling_fit.csv (both forms per "
      "architecture, with intervals), scaling_ratio.csv, scaling.png / scaling.svg.\n";
  return md;
}

}  // namespace kimi
