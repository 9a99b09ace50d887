// The sweep report (trainer/report.h): rows = settings without lr and seed (mixer, training
// length, anything else the grid varies), the best lr per row on the mean over seeds, the
// paper's Figure 4 value beside it, the fairness columns from models/flops.h, the task details.
// Here the Markdown and LaTeX are laid out; the rows are built in report_rows.cpp, the paper's
// numbers are report_figure4.cpp and the task details report_task_details.cpp.
#include "trainer/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "models/flops.h"
#include "trainer/report_internal.h"
#include "trainer/sweep_results.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

using report_detail::build_rows;
using report_detail::Candidate;
using report_detail::display;
using report_detail::paper_steps;
using report_detail::Row;
using report_detail::task_details;

std::string pct(double v) { return std::isfinite(v) ? fmt::format("{:.1f}", 100 * v) : "-"; }

std::string acc_text(const SeedStat& s, bool latex) {
  if (s.n == 0) return "-";
  const std::string pm = latex ? " $\\pm$ " : " ± ";
  if (s.n == 1) return pct(s.mean) + " (1 seed)";
  return fmt::format("{}{}{} (n={})", pct(s.mean), pm, pct(s.sd), s.n);
}

std::string bytes_text(int64_t b) {
  if (b >= (1 << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1 << 20));
  if (b >= (1 << 10)) return fmt::format("{:.1f} KiB", static_cast<double>(b) / (1 << 10));
  return fmt::format("{} B", b);
}

std::string count_text(double v) {
  if (v >= 1e9) return fmt::format("{:.2f} G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f} M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f} K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string lr_text(double lr) { return fmt::format("{:g}", lr); }

struct Fairness {
  std::string params, state, flops;
};

Fairness fairness(const Row& row) {
  const RunConfig& c = *row.config;
  try {
    const auto cost = models::model_cost(c.model, c.task.vocab_size, row.seq_len);
    const auto& layer = cost.layers.front();
    return {count_text(static_cast<double>(cost.params)), bytes_text(layer.state_bytes()),
            count_text(cost.train_flops_per_token)};
  } catch (const UserError&) {
    return {"-", "-", "-"};
  }
}

struct Curve {
  std::string to94 = "never", final_acc = "-";
};

// The mean over the chosen lr's seeds of accuracy against steps; a run stopped early holds its
// last value. Steps where some seed has no eval yet are left out.
Curve mean_curve(const Candidate& c, int64_t len) {
  std::set<int64_t> steps;
  for (const SweepRun* r : c.runs)
    if (r->curve.count(len))
      for (const auto& pt : r->curve.at(len)) steps.insert(pt.first);
  Curve out;
  for (int64_t step : steps) {
    std::vector<double> accs;
    for (const SweepRun* r : c.runs) {
      if (!r->curve.count(len) || r->curve.at(len).empty()) continue;
      const auto& pts = r->curve.at(len);
      const auto it =
          std::find_if(pts.begin(), pts.end(), [&](const auto& pt) { return pt.first == step; });
      if (it != pts.end())
        accs.push_back(it->second);
      else if (r->state == PointState::kStoppedEarly && step > pts.back().first)
        accs.push_back(pts.back().second);
    }
    if (accs.size() < c.runs.size()) continue;  // a seed without an eval here yet
    const double mean = seed_stat(accs).mean;
    if (out.to94 == "never" && mean >= 0.94) out.to94 = fmt::format("{}", step);
    out.final_acc = fmt::format("{} (step {})", pct(mean), step);
  }
  return out;
}

std::string latex_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '_' || ch == '%' || ch == '&' || ch == '#') out += '\\';
    out += ch;
  }
  return out;
}

}  // namespace

SweepReportText make_sweep_report(const std::string& sweep_dir) {
  size_t total_points = 0;
  const std::vector<SweepPoint> points = load_sweep_points(sweep_dir, &total_points);
  const std::vector<SweepRun> runs = read_sweep_runs(points);
  if (runs.empty())
    throw UserError(fmt::format("{}: no point has finished yet; nothing to report", sweep_dir));
  const std::vector<Row> rows = build_rows(runs);
  const RunConfig& first = runs.front().point->config;
  const std::string task = first.task.name;
  std::set<int64_t> lengths, seeds;
  std::set<double> lrs;
  for (const auto& r : runs) {
    lengths.insert(r.point->config.train.seq_len);
    seeds.insert(r.point->config.train.seed);
    lrs.insert(r.point->config.train.lr);
  }
  std::vector<std::string> lr_list;
  for (double lr : lrs) lr_list.push_back(lr_text(lr));
  const bool has_setting =
      std::any_of(rows.begin(), rows.end(), [](const Row& r) { return !r.setting.empty(); });

  std::string md =
      fmt::format("# {}: results against the paper\n\n", fs::path(sweep_dir).filename().string());
  md += fmt::format(
      "{} of the sweep's {} points have finished or failed. Accuracy: token accuracy (%) at the "
      "training "
      "length, the best over the run's evals, **mean ± sd over {} seed(s)** ({}); the lr of each "
      "row (grid: {}) is the one with the best mean, as the paper reports the best lr per point. "
      "No number below is one seed's maximum. Paper: the tech report's Figure 4 as read off the "
      "plot (DESIGN.md section 6; `~` = approximate).\n\n",
      runs.size(), total_points, seeds.size(), fmt::join(seeds, ", "), fmt::join(lr_list, ", "));
  md += "## Task and training details (the paper leaves these unstated)\n\n";
  md += task_details(first, lengths) + "\n";

  md += "## Best accuracy against training length\n\n";
  md += std::string(has_setting ? "| setting " : "") +
        "| mixer | T | best lr | accuracy % | paper % | difference | lrs tried | params | "
        "state / layer (fp32) | train FLOPs / token |\n";
  md += std::string(has_setting ? "|---" : "") + "|---|---|---|---|---|---|---|---|---|---|\n";
  std::string tex =
      "% kimi-lab report: best accuracy (%) at the training length, mean $\\pm$ sd over seeds\n"
      "\\begin{tabular}{llrrrrrrr}\n\\toprule\n"
      "Mixer & $T$ & lr & Accuracy (\\%) & Paper (\\%) & $\\Delta$ & Params & State/layer & "
      "FLOPs/token \\\\\n\\midrule\n";
  std::vector<std::string> differences;
  for (const Row& row : rows) {
    const auto paper = paper_figure4(task, row.mixer, row.seq_len);
    const Fairness f = fairness(row);
    const Candidate* c = row.chosen();
    std::string diff = "-", paper_text = "-";
    if (paper)
      paper_text = (paper->approximate ? "~" : "") + fmt::format("{:.0f}", paper->accuracy);
    if (paper && c) {
      const double d = 100 * c->best.mean - paper->accuracy;
      diff = fmt::format("{:+.1f}", d);
      if (std::abs(d) > 10)
        differences.push_back(fmt::format("{}{} at T={}: {} against the paper's {} ({})",
                                          display(row.mixer, *row.config),
                                          row.setting.empty() ? "" : " (" + row.setting + ")",
                                          row.seq_len, pct(c->best.mean), paper_text, diff));
    }
    std::string tried;
    for (const Candidate& k : row.candidates)
      tried += (tried.empty() ? "" : ", ") +
               fmt::format("{}: {}{}", lr_text(k.lr), pct(k.best.mean),
                           k.failed ? fmt::format(" ({} failed)", k.failed) : "");
    const std::string name = display(row.mixer, *row.config);
    md += (has_setting ? "| " + row.setting + " " : std::string()) +
          fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", name, row.seq_len,
                      c ? lr_text(c->lr) : "-", c ? acc_text(c->best, false) : "-", paper_text,
                      diff, tried, f.params, f.state, f.flops);
    tex += fmt::format("{} & {} & {} & {} & {} & {} & {} & {} & {} \\\\\n", latex_escape(name),
                       row.seq_len, c ? lr_text(c->lr) : "--", c ? acc_text(c->best, true) : "--",
                       latex_escape(paper_text == "-" ? "--" : paper_text),
                       diff == "-" ? "--" : diff, f.params, latex_escape(f.state), f.flops);
  }
  tex += "\\bottomrule\n\\end{tabular}\n";

  // Accuracy against steps at 1024 (the paper's second row of plots).
  std::string steps;
  for (const Row& row : rows) {
    if (row.seq_len != 1024 || !row.chosen()) continue;
    const Curve curve = mean_curve(*row.chosen(), row.eval_len);
    steps += (has_setting ? "| " + row.setting + " " : std::string()) +
             fmt::format("| {} | {} | {} | {} | {} |\n", display(row.mixer, *row.config),
                         lr_text(row.chosen()->lr), curve.to94, curve.final_acc,
                         paper_steps(task, row.mixer));
  }
  if (!steps.empty()) {
    md += "\n## Accuracy against steps at T=1024 (mean over seeds, best lr)\n\n";
    md += std::string(has_setting ? "| setting " : "") +
          "| mixer | lr | first step at >= 94% | last eval % | paper |\n" +
          (has_setting ? "|---" : "") + "|---|---|---|---|---|\n";
    md += steps;
  }
  md += "\n## Where the result differs from the paper (more than 10 points)\n\n";
  if (differences.empty()) md += "None.\n";
  for (const auto& d : differences) md += "- " + d + "\n";
  md +=
      "\nColumns: params = the whole model; state / layer = the recurrent state (and short-conv "
      "tails) one layer carries per sequence, or attention's KV cache at T, in fp32; train FLOPs "
      "= 3 x forward, counted from the config (models/flops.h).\n";
  return {md, tex};
}

SweepReportText write_sweep_report(const std::string& sweep_dir, const std::string& paper) {
  if (paper != "figure4" && paper != "table1")
    throw UserError(fmt::format("--paper {}: unknown; the report knows figure4 and table1", paper));
  SweepReportText r =
      paper == "table1" ? make_table1_report(sweep_dir) : make_sweep_report(sweep_dir);
  io::write_file_atomic((fs::path(sweep_dir) / "report.md").string(), r.markdown);
  io::write_file_atomic((fs::path(sweep_dir) / "report.tex").string(), r.latex);
  return r;
}

}  // namespace kimi
