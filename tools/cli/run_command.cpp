// `kimi-lab run CONFIG [key=value ...]`: train and evaluate one model, then plot the run.
#include <spdlog/spdlog.h>

#include "tools/cli/commands.h"
#include "tools/cli/plotting.h"
#include "trainer/trainer.h"

namespace kimi::cli {

void register_run(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "run",
      "Train a model on a task from a YAML config and evaluate it. Writes config.yaml, "
      "overrides.txt,\n"
      "metrics.csv, eval.csv, summary.json, log.txt, checkpoints and plots into the run "
      "directory.\n"
      "Example: kimi-lab run experiments/quickstart.yaml model.mixer=gdn train.lr=3e-3");
  auto req = std::make_shared<RunRequest>();
  auto args = std::make_shared<std::vector<std::string>>();
  auto no_plot = std::make_shared<bool>(false);
  auto no_progress = std::make_shared<bool>(false);
  cmd->add_option(
      "args", *args,
      "CONFIG.yaml followed by key=value overrides of any config key (dotted, typed as YAML:\n"
      "train.lr=3e-4, model.mixer=[kda,kda,kda,attention], model.hybrid=kda:attention=3:1).\n"
      "With --resume, only overrides.");
  cmd->add_option("--device", req->device,
                  "cpu | cuda | auto (default: the config's train.device)");
  cmd->add_option(
      "--out", req->out_dir,
      "run directory (default: <out_dir>/<name> from the config); one that holds a run\n"
      "is refused (continue it with --resume)");
  cmd->add_option(
      "--resume", req->resume_dir,
      "continue the run in this directory from its latest checkpoint (same numbers as an\n"
      "uninterrupted run). Overrides then may only change train.steps (extends the run, the\n"
      "learning rate of no step changes), log/eval/checkpoint cadence, keep_checkpoints,\n"
      "target_accuracy, device, precision, threads, eval.batch_size. SIGINT/SIGTERM during a\n"
      "run: checkpoint, status.json 'interrupted', exit 130/143");
  cmd->add_option(
      "--stop-at", req->stop_at,
      "checkpoint and stop at this step (continue later with --resume), e.g. to split a\n"
      "long run across sessions");
  cmd->add_flag("--no-plot", *no_plot, "do not draw the plots at the end");
  cmd->add_flag("--no-progress", *no_progress, "plain log lines instead of a progress bar");
  cmd->callback([req, args, no_plot, no_progress] {
    std::vector<std::string> rest = *args;
    if (req->resume_dir.empty()) {
      if (rest.empty() || rest[0].find('=') != std::string::npos)
        throw UserError(
            "run: give a config file first (e.g. kimi-lab run experiments/quickstart.yaml)");
      req->config_path = rest[0];
      rest.erase(rest.begin());
    }
    req->overrides = rest;
    req->progress = !*no_progress;
    RunResult r = run_training(*req);
    fmt::print("\nrun directory: {}\n", r.run_dir);
    for (const auto& e : r.last_eval)
      fmt::print("  {} T={:<5} accuracy {:.4f}  exact match {:.4f}  loss {:.4f}\n", e.task,
                 e.seq_len, e.accuracy, e.exact_match, e.loss);
    fmt::print("  metrics: {0}/metrics.csv  eval: {0}/eval.csv  summary: {0}/summary.json\n",
               r.run_dir);
    if (!*no_plot) {
      std::string prefix = r.run_dir + "/plots";
      if (draw_plots(prefix, {r.run_dir})) fmt::print("  plots: {}_*.png / .svg\n", prefix);
    }
  });
}

}  // namespace kimi::cli
