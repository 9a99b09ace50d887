// `kimi-lab scaling SWEEP_DIR`: the paper's Figure 5 (loss against training compute, fitted
// scaling laws, compute ratio at equal loss) from a finished or partly finished sweep of model
// sizes x token budgets x architectures (trainer/scaling_report.h; experiments/paper/scaling.yaml).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "core/tensor/error.h"
#include "tools/cli/commands.h"
#include "tools/cli/flag_checks.h"
#include "trainer/scaling_report.h"

namespace kimi::cli {
namespace {

namespace fs = std::filesystem;

struct ScalingArgs {
  std::string sweep_dir, out;
  int64_t bootstrap = 1000, seed = 0;
  double level = 0.95;
  bool no_plot = false;
};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// tools/plot_scaling.py over the CSVs in `dir`; false (with a warning) when Python fails. The
// script sits in the source tree (KIMI_SOURCE_DIR) or under ./tools, as tools/plot.py does.
bool plot(const std::string& dir, const std::string& title) {
  fs::path script;
  for (const fs::path& p : {fs::path(KIMI_SOURCE_DIR) / "tools" / "plot_scaling.py",
                            fs::path("tools") / "plot_scaling.py"})
    if (fs::exists(p)) {
      script = p;
      break;
    }
  if (script.empty()) {
    spdlog::warn("tools/plot_scaling.py not found; no plot");
    return false;
  }
  const std::string python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const std::string cmd =
      fmt::format("{} {} {} --title {} >/dev/null", python, shell_quote(script.string()),
                  shell_quote(dir), shell_quote(title));
  if (std::system(cmd.c_str()) != 0) {
    spdlog::warn("plotting failed (is python3-matplotlib installed? run tools/setup.sh)");
    return false;
  }
  return true;
}

void run_scaling(const ScalingArgs& a) {
  if (a.bootstrap < 0 || a.bootstrap > 1'000'000)
    throw UserError(fmt::format("--bootstrap {}: must be in [0, 1000000]", a.bootstrap));
  if (a.seed < 0) throw UserError(fmt::format("--seed {}: must be >= 0", a.seed));
  if (!(a.level > 0 && a.level < 1))
    throw UserError(fmt::format("--level {}: must be in (0, 1), e.g. 0.95", a.level));
  if (!fs::is_directory(a.sweep_dir))
    throw UserError(
        fmt::format("{}: not a directory (give a sweep directory, e.g. "
                    "runs/scaling)",
                    a.sweep_dir));
  ScalingOptions o;
  o.bootstrap = static_cast<int>(a.bootstrap);
  o.seed = static_cast<uint64_t>(a.seed);
  o.level = a.level;
  const std::string out = a.out.empty() ? (fs::path(a.sweep_dir) / "scaling").string() : a.out;
  const ScalingResult r = write_scaling_report(a.sweep_dir, out, o);
  fmt::print(
      "{0}\nwrote {1}/scaling_points.csv, {1}/scaling_fit.csv, {1}/scaling_ratio.csv, "
      "{1}/report.md\n",
      scaling_report_md(r), out);
  if (!a.no_plot && plot(out, fmt::format("{}: loss against compute (Figure 5, scaled down)",
                                          fs::path(a.sweep_dir).filename().string())))
    fmt::print("wrote {0}/scaling.png and {0}/scaling.svg\n", out);
}

}  // namespace

void register_scaling(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "scaling",
      "The paper's Figure 5, scaled down: from a sweep of model sizes x token budgets x\n"
      "architectures (experiments/paper/scaling.yaml), each finished point's training compute C\n"
      "(metrics.csv flops at the last step, also in PFLOP/s-days) and final validation loss\n"
      "(eval.csv); per architecture the lower envelope of loss against C, the fit\n"
      "L = a C^-b + c by least squares on log L (c profiled, then Levenberg-Marquardt) and the\n"
      "paper's a C^-b, with percentile-bootstrap intervals; the compute ratio at equal loss\n"
      "against all-MLA; the paper's fits beside them (DESIGN.md section 7). Writes\n"
      "OUT/scaling_points.csv, scaling_fit.csv, scaling_ratio.csv, report.md (atomically) and\n"
      "scaling.png / .svg, and prints the report. Unfinished points are left out and listed.\n"
      "Example: kimi-lab scaling runs/scaling --bootstrap 2000 --seed 1");
  auto a = std::make_shared<ScalingArgs>();
  cmd->add_option("sweep_dir", a->sweep_dir, "a sweep directory (with sweep.json)")->required();
  cmd->add_option("--out", a->out, "output folder (default SWEEP_DIR/scaling)");
  cmd->add_option("--bootstrap", a->bootstrap,
                  "bootstrap replicates for the intervals (0 = none; each resamples every\n"
                  "architecture's envelope points with replacement and refits)")
      ->check(kFitsInt64)
      ->capture_default_str();
  cmd->add_option("--seed", a->seed,
                  "seed of the bootstrap resampling; the same seed gives the same intervals")
      ->check(kFitsInt64)
      ->capture_default_str();
  cmd->add_option("--level", a->level, "confidence level of the percentile intervals")
      ->capture_default_str();
  cmd->add_flag("--no-plot", a->no_plot, "write no PNG / SVG");
  cmd->callback([a] { run_scaling(*a); });
}

}  // namespace kimi::cli
