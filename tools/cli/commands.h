// The kimi-lab subcommands. Each lives in its own file and adds itself to the app.
#pragma once

#include <CLI/CLI.hpp>

namespace kimi::cli {

// Each register_* adds one subcommand (with its --help text) whose callback does the work.
// A callback reports user errors by throwing kimi::UserError; main prints it as one line.
void register_version(CLI::App& app);
void register_inspect(CLI::App& app);
void register_run(CLI::App& app);
void register_sweep(CLI::App& app);
void register_eval(CLI::App& app);
void register_plot(CLI::App& app);
void register_verify(CLI::App& app);
void register_bench(CLI::App& app);
void register_generate(CLI::App& app);     // decoding with the Kimi-Linear hybrid's caches
void register_model_info(CLI::App& app);   // layers, parameters, cache sizes (Kimi-Linear)
void register_report(CLI::App& app);       // a sweep against the paper (report.md, report.tex)
void register_data(CLI::App& app);         // data prepare (LM token shards)
void register_simulate(CLI::App& app);     // inference efficiency simulator (inference/)
void register_scaling(CLI::App& app);      // scaling law from a sweep (Figure 5)
void register_bench_infer(CLI::App& app);  // the decode engine's TPOT (inference/engine/)

}  // namespace kimi::cli
