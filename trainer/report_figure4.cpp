// The paper's Figure 4 (trainer/report.h), as DESIGN.md section 6 reads it off the plots: the
// accuracy at each training length, and at length 1024 how accuracy grows with steps.
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "trainer/report.h"
#include "trainer/report_internal.h"

namespace kimi {
namespace {

// DESIGN.md section 6: Figure 4 read off the plot, accuracy % at 256 / 512 / 1024 / 2048.
// A negative value marks a number read as "~" (approximate).
struct PaperRow {
  const char* task;
  const char* mixer;
  double acc[4];
};
constexpr PaperRow kFigure4[] = {
    {"palindrome", "kda", {100, 100, 100, -42}}, {"palindrome", "gdn", {100, 100, -97, -37}},
    {"palindrome", "mamba2", {100, 0, 0, 0}},    {"mqar", "kda", {100, 100, 100, -48}},
    {"mqar", "gdn", {100, 100, -79, -29}},       {"mqar", "mamba2", {-98, 0, 0, 0}},
    {"stack", "kda", {100, 100, 100, 100}},      {"stack", "gdn", {100, 100, 100, 100}},
    {"stack", "mamba2", {100, 100, 0, 0}},
};

}  // namespace

namespace report_detail {

// DESIGN.md section 6, accuracy against steps at length 1024.
std::string paper_steps(const std::string& task, const std::string& mixer) {
  if (mixer == "kda") return "passes ~94% within ~4K steps";
  if (mixer == "gdn" && task == "palindrome") return "needs ~16K steps";
  if (mixer == "gdn" && task == "stack") return "needs ~8K steps";
  if (mixer == "gdn" && task == "mqar") return "~79% at 20K";
  if (mixer == "mamba2") return "stays at 0";
  return "-";
}

}  // namespace report_detail

std::optional<PaperValue> paper_figure4(const std::string& task, const std::string& mixer,
                                        int64_t seq_len) {
  const int64_t lens[4] = {256, 512, 1024, 2048};
  for (const auto& row : kFigure4) {
    if (task != row.task || mixer != row.mixer) continue;
    for (int i = 0; i < 4; ++i)
      if (lens[i] == seq_len) return PaperValue{std::abs(row.acc[i]), row.acc[i] < 0};
  }
  return std::nullopt;
}

}  // namespace kimi
