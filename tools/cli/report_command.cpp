// `kimi-lab report SWEEP_DIR`: the sweep's result against the paper (trainer/report.h), printed
// and written to report.md and report.tex in the sweep directory.
#include <fmt/format.h>

#include "tools/cli/commands.h"
#include "trainer/report.h"

namespace kimi::cli {

void register_report(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "report",
      "Tabulate a sweep against the paper's Figure 4 numbers: per mixer and training length\n"
      "the best lr (chosen on the mean over seeds), accuracy as mean +- sd over seeds, the\n"
      "paper's value and the difference, parameters, recurrent state bytes per layer and\n"
      "training FLOPs per token; the task details the paper leaves unstated; accuracy against\n"
      "steps at T=1024. Writes SWEEP_DIR/report.md and report.tex (LaTeX table) and prints the\n"
      "Markdown. Example: kimi-lab report runs/figure4_mqar");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("sweep_dir", *dir, "a sweep directory (with sweep.json)")->required();
  cmd->callback([dir] {
    const SweepReportText r = write_sweep_report(*dir);
    fmt::print("{}\nwrote {}/report.md and {}/report.tex\n", r.markdown, *dir, *dir);
  });
}

}  // namespace kimi::cli
