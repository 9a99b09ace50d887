// `kimi-lab report SWEEP_DIR`: the sweep's result against the paper (trainer/report.h), printed
// and written to report.md and report.tex in the sweep directory.
#include <fmt/format.h>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
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
  auto paper = std::make_shared<std::string>("figure4");
  cmd->add_option("--paper", *paper,
                  "the paper's numbers to compare with; only figure4 (the tech report's\n"
                  "synthetic tasks, DESIGN.md section 6) is transcribed")
      ->capture_default_str();
  auto latex = std::make_shared<std::string>();
  cmd->add_option("--latex", *latex,
                  "also write the LaTeX table to this file (always written to report.tex)");
  cmd->callback([dir, paper, latex] {
    if (*paper != "figure4")
      throw UserError(fmt::format("--paper {}: unknown; the report knows figure4", *paper));
    const SweepReportText r = write_sweep_report(*dir);
    if (!latex->empty()) io::write_file_atomic(*latex, r.latex);
    fmt::print("{}\nwrote {}/report.md and {}/report.tex{}\n", r.markdown, *dir, *dir,
               latex->empty() ? "" : " and " + *latex);
  });
}

}  // namespace kimi::cli
