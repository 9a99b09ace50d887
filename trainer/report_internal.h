// Internal to trainer/report*.cpp: the rows of the Figure 4 report (one per setting, mixer and
// training length, with every lr tried and the one chosen on the mean over seeds), and the pieces
// that report.cpp lays out as Markdown and LaTeX.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "trainer/config.h"
#include "trainer/sweep_results.h"

namespace kimi::report_detail {

struct Candidate {
  double lr = 0;
  SeedStat best, last;
  std::vector<const SweepRun*> runs;
  int failed = 0;
};

struct Row {
  std::string mixer, setting;
  int64_t seq_len = 0, eval_len = 0;
  const RunConfig* config = nullptr;
  std::vector<Candidate> candidates;
  int chosen_index = -1;  // the candidate with the best mean (-1: none has a result)
  const Candidate* chosen() const {
    return chosen_index < 0 ? nullptr : &candidates[static_cast<size_t>(chosen_index)];
  }
};

// Groups the runs into rows: one per mixer, training length and setting (whatever else the grid
// varies), each with its lrs as candidates; sorted by setting, then the paper's mixer order.
std::vector<Row> build_rows(const std::vector<SweepRun>& runs);

// The mixer as the paper names it (attention with its position encoding).
std::string display(const std::string& mixer, const RunConfig& c);

// The paper's accuracy against steps at length 1024 (DESIGN.md section 6), in words.
std::string paper_steps(const std::string& task, const std::string& mixer);

// The task and training settings the paper leaves unstated, as Markdown list lines; per length
// in `lengths` the scored positions a row (and for stack the depth each pop reads).
std::string task_details(const RunConfig& c, const std::set<int64_t>& lengths);

}  // namespace kimi::report_detail
