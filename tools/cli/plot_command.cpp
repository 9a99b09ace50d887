// `kimi-lab plot RUN_DIR...`: loss/accuracy figures (PNG and SVG) for one or more runs.
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>

#include "core/tensor/error.h"
#include "tools/cli/commands.h"
#include "tools/cli/plotting.h"

namespace kimi::cli {

namespace fs = std::filesystem;

static std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The script sits in the source tree (KIMI_SOURCE_DIR) or beside the binary's ../tools.
static std::string plot_script() {
  for (fs::path p :
       {fs::path(KIMI_SOURCE_DIR) / "tools" / "plot.py", fs::path("tools") / "plot.py"})
    if (fs::exists(p)) return p.string();
  return "";
}

bool draw_plots(const std::string& out_prefix, const std::vector<std::string>& run_dirs) {
  std::string script = plot_script();
  if (script.empty()) {
    spdlog::warn("tools/plot.py not found; skipping plots");
    return false;
  }
  // Debian's python3 carries python3-matplotlib; a python3 earlier on PATH may not.
  std::string python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  std::string cmd = python + " " + shell_quote(script) + " " + shell_quote(out_prefix);
  for (const auto& d : run_dirs) cmd += " " + shell_quote(d);
  if (std::system(cmd.c_str()) != 0) {
    spdlog::warn("plotting failed (is python3-matplotlib installed? run tools/setup.sh)");
    return false;
  }
  return true;
}

void register_plot(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plot",
      "Plot loss and accuracy against steps and accuracy against sequence length,\n"
      "one line per mixer (fixed colours), as PNG and SVG.");
  auto dirs = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("runs", *dirs, "run directories (each with config.yaml, metrics.csv, eval.csv)")
      ->required();
  cmd->add_option("--out", *out, "output file prefix (default: <first run>/plots)");
  cmd->callback([dirs, out] {
    for (const auto& d : *dirs)
      if (!fs::exists(fs::path(d) / "config.yaml"))
        throw UserError(fmt::format("{}: not a run directory (no config.yaml)", d));
    std::string prefix = out->empty() ? (*dirs)[0] + "/plots" : *out;
    if (!draw_plots(prefix, *dirs)) throw UserError("plotting failed");
    fmt::print("wrote {}_*.png and {}_*.svg\n", prefix, prefix);
  });
}

}  // namespace kimi::cli
