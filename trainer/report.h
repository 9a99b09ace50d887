// `kimi-lab report SWEEP_DIR`: a sweep's result next to the paper's numbers (the tech report's
// Figure 4 as read in DESIGN.md section 6), as Markdown and as a LaTeX table. Every accuracy is
// the mean over the seeds of a setting (with its standard deviation and count); the best
// learning rate per mixer and length is chosen on that mean, as the paper reports the best lr
// per point. Beside each row: parameters, recurrent state bytes per layer and training FLOPs
// per token (models/flops.h), and the task details the paper leaves unstated.
#pragma once

#include <optional>
#include <string>

namespace kimi {

// The paper's Figure 4 number for a task, mixer and training length ("~42" read off the plot
// counts as 42, approximate = true); nullopt where the paper has no such point.
struct PaperValue {
  double accuracy = 0;  // percent
  bool approximate = false;
};
std::optional<PaperValue> paper_figure4(const std::string& task, const std::string& mixer,
                                        int64_t seq_len);

struct SweepReportText {
  std::string markdown;
  std::string latex;
};

// Reads the sweep directory (sweep.json, the run directories); UserError when it is not one or
// no point has finished.
SweepReportText make_sweep_report(const std::string& sweep_dir);

// The paper's Table 1 (trainer/report_table1.cpp): per ablation row the train and validation
// perplexity (mean ± sd over seeds) beside DESIGN.md section 7's, the rank of each row in both,
// Spearman's rho, and each row's tokens and training FLOPs. UserError as make_sweep_report.
SweepReportText make_table1_report(const std::string& sweep_dir);

// The report for `paper` (figure4 | table1), written atomically to <sweep dir>/report.md and
// report.tex. UserError for another paper name.
SweepReportText write_sweep_report(const std::string& sweep_dir,
                                   const std::string& paper = "figure4");

}  // namespace kimi
