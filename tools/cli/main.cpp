// kimi-lab: the command-line entry point. Subcommands are registered from tools/cli/*.cpp.
// Every mistake on the command line (a CLI11 parse error or a kimi::UserError) is one line on
// stderr and exit status 2; --help and version exit 0; an internal error exits 1.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "core/tensor/error.h"
#include "tools/cli/commands.h"

namespace {

std::vector<std::string> subcommand_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    names.push_back(sub->get_name());
  return names;
}

// Before the subcommand: the first word that is neither an option nor the value of
// --log-level (what the user meant as the subcommand), and the first option other than
// --log-level ("" when there is none).
struct TopLevelWords {
  std::string word, option;
};

TopLevelWords top_level_words(int argc, char** argv) {
  TopLevelWords w;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--log-level") {
      ++i;
    } else if (!arg.empty() && arg[0] != '-') {
      w.word = arg;
      break;
    } else if (w.option.empty() && arg.rfind("--log-level=", 0) != 0) {
      w.option = arg;
    }
  }
  return w;
}

// CLI11's messages, made one line (the subcommand that failed named, a pointer to its --help).
std::string parse_error_line(const CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  const std::vector<std::string> names = subcommand_names(app);
  if (app.get_subcommands().empty()) {
    const TopLevelWords w = top_level_words(argc, argv);
    if (w.word.empty() && !w.option.empty())
      return fmt::format("unknown option '{}' before the subcommand ({}) (kimi-lab --help)",
                         w.option, fmt::join(names, ", "));
    if (w.word.empty())
      return fmt::format("a subcommand is required: {} (kimi-lab --help)", fmt::join(names, ", "));
    if (std::find(names.begin(), names.end(), w.word) == names.end())
      return fmt::format("unknown subcommand '{}'; try kimi-lab --help (subcommands: {})", w.word,
                         fmt::join(names, ", "));
  }
  std::string what = e.what();
  for (char& c : what)
    if (c == '\n') c = ' ';
  const std::string sub =
      app.get_subcommands().empty() ? "" : " " + app.get_subcommands().front()->get_name();
  return fmt::format("{} (kimi-lab{} --help)", what, sub);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "kimi-lab: train and evaluate Kimi Linear token mixers (KDA, GDN, DeltaNet, Mamba2,\n"
      "attention, MLA) on synthetic tasks and byte-level LM, verify them against reference\n"
      "tensors, and benchmark them. `kimi-lab SUBCOMMAND --help` explains each flag.\n"
      "A mistake on the command line or in a config is one line on stderr and exit status 2.",
      "kimi-lab"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "spdlog level: trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  // Warnings before a run's own logger exists (the CPU cost estimate) go to stderr, like the
  // run's log lines.
  spdlog::set_default_logger(spdlog::stderr_color_mt("kimi-lab"));
  app.parse_complete_callback([&] { spdlog::set_level(spdlog::level::from_str(log_level)); });
  kimi::cli::register_version(app);
  kimi::cli::register_run(app);
  kimi::cli::register_sweep(app);
  kimi::cli::register_eval(app);
  kimi::cli::register_plot(app);
  kimi::cli::register_verify(app);
  kimi::cli::register_bench(app);
  kimi::cli::register_inspect(app);
  kimi::cli::register_generate(app);
  kimi::cli::register_model_info(app);
  kimi::cli::register_report(app);
  kimi::cli::register_data(app);
  kimi::cli::register_simulate(app);
  kimi::cli::register_scaling(app);
  kimi::cli::register_bench_infer(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::fprintf(stderr, "error: %s\n", parse_error_line(app, e, argc, argv).c_str());
    return 2;
  } catch (const kimi::UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
