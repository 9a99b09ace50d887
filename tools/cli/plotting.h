// Drawing figures through tools/plot.py (Python + matplotlib, installed by tools/setup.sh).
#pragma once

#include <string>
#include <vector>

namespace kimi::cli {

// Runs tools/plot.py OUT_PREFIX RUN_DIR...; false (with a warning) when Python or matplotlib
// is missing or the script fails.
bool draw_plots(const std::string& out_prefix, const std::vector<std::string>& run_dirs);

}  // namespace kimi::cli
