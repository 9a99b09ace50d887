// kimi-lab: the command-line entry point. Subcommands are registered from tools/cli/*.cpp.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/tensor/error.h"
#include "tools/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "kimi-lab: train and evaluate Kimi Linear token mixers (KDA, GDN, DeltaNet, Mamba2,\n"
      "attention, MLA) on synthetic tasks and byte-level LM, verify them against reference\n"
      "tensors, and benchmark them. `kimi-lab SUBCOMMAND --help` explains each flag.",
      "kimi-lab"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "spdlog level: trace, debug, info, warn, error, off")
      ->capture_default_str();
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
  kimi::cli::register_simulate(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Error& e) {
    return app.exit(e);
  } catch (const kimi::UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
