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
      "Tabulate a sweep against the paper's numbers.\n"
      "--paper figure4 (default): per mixer and training length the best lr (chosen on the mean\n"
      "over seeds), accuracy as mean +- sd over seeds, the paper's value and the difference,\n"
      "parameters, recurrent state bytes per layer and training FLOPs per token; the task details\n"
      "the paper leaves unstated; accuracy against steps at T=1024.\n"
      "--paper table1: per ablation row (KDA:MLA ratio, output gate, short conv, RoPE) train and\n"
      "validation perplexity as mean +- sd over seeds beside the paper's Table 1, the rank of "
      "each\n"
      "row in both, Spearman's rho, tokens and training FLOPs per row.\n"
      "Writes SWEEP_DIR/report.md and report.tex (LaTeX table) and prints the Markdown.\n"
      "Examples: kimi-lab report runs/figure4_mqar; kimi-lab report runs/table1_ablation "
      "--paper table1");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("sweep_dir", *dir, "a sweep directory (with sweep.json)")->required();
  auto paper = std::make_shared<std::string>("figure4");
  cmd->add_option("--paper", *paper,
                  "the paper's numbers to compare with: figure4 (the synthetic tasks, DESIGN.md\n"
                  "section 6) or table1 (the ablations, DESIGN.md section 7)")
      ->capture_default_str();
  auto latex = std::make_shared<std::string>();
  cmd->add_option("--latex", *latex,
                  "also write the LaTeX table to this file (always written to report.tex)");
  cmd->callback([dir, paper, latex] {
    const SweepReportText r = write_sweep_report(*dir, *paper);
    if (!latex->empty()) io::write_file_atomic(*latex, r.latex);
    fmt::print("{}\nwrote {}/report.md and {}/report.tex{}\n", r.markdown, *dir, *dir,
               latex->empty() ? "" : " and " + *latex);
  });
}

}  // namespace kimi::cli
