// `kimi-lab run CONFIG [key=value ...]`: train and evaluate one model, then plot the run.
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "tools/cli/commands.h"
#include "tools/cli/flag_checks.h"
#include "tools/cli/plotting.h"
#include "tools/cli/run_ranks.h"
#include "trainer/cost_estimate.h"
#include "trainer/run_dir.h"
#include "trainer/trainer.h"

namespace kimi::cli {

namespace {

// Estimated CPU time past which `run` warns before training (a GPU-sized config).
constexpr double kWarnAboveSeconds = 1800;

// On the CPU, times the run's model before the loop and warns, with the estimate and a CPU-sized
// variant, when the run would take more than 30 minutes. Never stops the run.
void warn_if_long_on_cpu(const RunRequest& req) {
  const bool resume = !req.resume_dir.empty();
  const std::string cfg_path =
      resume ? (std::filesystem::path(req.resume_dir) / "config.yaml").string() : req.config_path;
  // run_training names a directory that is not a run; errors below are the ones it would
  // report first, let through unchanged.
  if (!std::filesystem::exists(cfg_path)) return;
  const RunConfig cfg = load_config(cfg_path, req.overrides);
  if (resolve_device(req.device.empty() ? cfg.train.device : req.device) != Device::kCPU) return;
  int64_t start = 0;
  if (resume)
    if (auto ckpt = find_latest_checkpoint(req.resume_dir)) start = ckpt->step;
  int64_t end = cfg.train.steps;
  if (req.stop_at > 0) end = std::min(end, req.stop_at);
  const CostEstimate est = estimate_cpu_cost(cfg, end - start);
  if (est.total_s() <= kWarnAboveSeconds) return;
  std::vector<std::string> small = cpu_sized_overrides(cfg);
  std::vector<std::string> small_all = req.overrides;
  small_all.insert(small_all.end(), small.begin(), small.end());
  const RunConfig small_cfg = load_config(cfg_path, small_all);
  const CostEstimate small_est = estimate_cpu_cost(small_cfg, small_cfg.train.steps);
  const bool target = cfg.train.target_accuracy > 0 || small_cfg.train.target_accuracy > 0;
  // The default logger (stderr); the run's logger, which also writes log.txt, starts after this.
  spdlog::warn(
      "{} on the CPU: {} ({} steps at {:.3g} s a step, {} evals at {:.3g} s; timed on {} rows "
      "here). This config is sized for a GPU (--device cuda). For a CPU-sized run use {}add "
      "the overrides {} ({}{}). Starting anyway; Ctrl-C stops it.",
      cfg_path, format_duration(est.total_s()), est.steps, est.step_s, est.evals, est.eval_s,
      est.rows_timed,
      cfg.task.name == "mqar" ? "experiments/quickstart.yaml (the same task, small), or " : "",
      fmt::join(small, " "), format_duration(small_est.total_s()),
      target ? " at most; it stops early at train.target_accuracy" : "");
}

// --profile-step N must name a step this invocation trains: after the checkpoint it resumes
// from, up to train.steps and --stop-at. Checked before anything is written.
void check_profile_step(const RunRequest& req) {
  if (req.profile_step <= 0) return;
  const bool resume = !req.resume_dir.empty();
  const std::string cfg_path =
      resume ? (std::filesystem::path(req.resume_dir) / "config.yaml").string() : req.config_path;
  if (!std::filesystem::exists(cfg_path)) return;  // run_training names the missing file
  const RunConfig cfg = load_config(cfg_path, req.overrides);
  int64_t start = 0;
  if (resume)
    if (auto ckpt = find_latest_checkpoint(req.resume_dir)) start = ckpt->step;
  int64_t end = cfg.train.steps;
  if (req.stop_at > 0) end = std::min(end, req.stop_at);
  if (req.profile_step <= start || req.profile_step > end)
    throw UserError(fmt::format("run --profile-step {}: this run trains steps {}..{}",
                                req.profile_step, start + 1, end));
}

}  // namespace

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
  auto no_estimate = std::make_shared<bool>(false);
  auto ranks = std::make_shared<int>(1);
  auto gpus = std::make_shared<int>(0);
  cmd->add_option(
      "args", *args,
      "CONFIG.yaml followed by key=value overrides of any config key (dotted, typed as YAML:\n"
      "train.lr=3e-4, model.mixer=[kda,kda,kda,attention], model.hybrid=kda:attention=3:1).\n"
      "With --resume, only overrides.");
  cmd->add_option("--device", req->device, "cpu | cuda | auto (default: the config's train.device)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
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
         "long run across sessions")
      ->check(kFitsInt64)
      ->check(CLI::PositiveNumber);
  cmd->add_option(
         "--ranks", *ranks,
         "data-parallel training on this host's CPU: starts N processes of this binary (RANK,\n"
         "WORLD_SIZE, MASTER_ADDR/PORT set, as torchrun does), each training its share of the\n"
         "train.batch_size rows (which must divide by N); rank 0 alone writes the run directory.\n"
         "The same numbers as one process, up to rounding. CPU ranks; on GPUs give --gpus N\n"
         "(README, 'Several GPUs')")
      ->check(CLI::Range(1, 1024));
  cmd->add_option(
         "--gpus", *gpus,
         "data-parallel training on N GPUs of this host: N processes (one GPU each, LOCAL_RANK),\n"
         "the gradients summed through NCCL (libnccl.so.2 loaded at run time); N = 1 runs the\n"
         "same data-parallel path on one GPU. Implies --device cuda (README, 'Several GPUs')")
      ->check(CLI::Range(1, 64));
  cmd->add_option(
         "--profile-step", req->profile_step,
         "time this step (1-based, as metrics.csv counts) op by op: each op's forward and each\n"
         "autograd node's backward, the device synchronised at every op boundary, so a row is\n"
         "the op's kernels plus their launches. Writes profile_step.csv into the run directory\n"
         "and prints the table after the run. Pick a step after the first few (warm-up)")
      ->check(kFitsInt64)
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-plot", *no_plot, "do not draw the plots at the end");
  cmd->add_flag("--no-progress", *no_progress, "plain log lines instead of a progress bar");
  cmd->add_flag(
      "--no-estimate", *no_estimate,
      "on the CPU, skip the cost estimate: by default one forward + backward pass on a few rows\n"
      "of the batch is timed before training, and a run estimated at more than 30 minutes (a\n"
      "GPU-sized config such as experiments/mqar.yaml) gets a warning with the estimate and a\n"
      "CPU-sized variant; the run goes on either way");
  cmd->callback([req, args, no_plot, no_progress, no_estimate, ranks, gpus] {
    if (*gpus > 0) {
      if (*ranks > 1) throw UserError("run: give --ranks N (CPU) or --gpus N, not both");
      if (!req->device.empty() && req->device != "cuda")
        throw UserError("run --gpus: trains on GPUs; --device " + req->device + " contradicts it");
      req->device = "cuda";
    } else if (*ranks > 1 && req->device == "cuda") {
      throw UserError("run --ranks: CPU ranks; for GPUs give --gpus N (one GPU a rank, NCCL)");
    }
    if (*ranks > 1 || *gpus > 0) {
      const char* flag = *gpus > 0 ? "--gpus" : "--ranks";
      if (req->profile_step > 0)
        throw UserError(
            fmt::format("run {}: --profile-step times one process; drop {}", flag, flag));
      if (std::getenv("WORLD_SIZE") != nullptr)
        throw UserError(
            fmt::format("run {}: WORLD_SIZE is set: this process is a rank already", flag));
      std::vector<std::string> argv = {std::filesystem::read_symlink("/proc/self/exe").string(),
                                       "run"};
      argv.insert(argv.end(), args->begin(), args->end());
      const std::pair<const char*, const std::string*> options[] = {
          {"--device", &req->device}, {"--out", &req->out_dir}, {"--resume", &req->resume_dir}};
      for (const auto& [flag, value] : options)
        if (!value->empty()) argv.insert(argv.end(), {flag, *value});
      if (req->stop_at > 0) argv.insert(argv.end(), {"--stop-at", std::to_string(req->stop_at)});
      if (*no_plot) argv.push_back("--no-plot");
      if (*no_progress) argv.push_back("--no-progress");
      if (*no_estimate) argv.push_back("--no-estimate");
      if (*gpus > 0)
        run_ranks(argv, *gpus, "nccl");
      else
        run_ranks(argv, *ranks);
      return;
    }
    // In a data-parallel run, rank 0 alone estimates, reports and plots.
    const char* rank_env = std::getenv("RANK");
    const bool root = rank_env == nullptr || std::string(rank_env) == "0";
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
    check_profile_step(*req);
    if (!*no_estimate && root) warn_if_long_on_cpu(*req);
    RunResult r = run_training(*req);
    if (r.run_dir.empty()) return;  // a data-parallel rank other than 0
    fmt::print("\nrun directory: {}\n", r.run_dir);
    for (const auto& e : r.last_eval)
      fmt::print("  {} T={:<5} accuracy {:.4f}  exact match {:.4f}  loss {:.4f}\n", e.task,
                 e.seq_len, e.accuracy, e.exact_match, e.loss);
    fmt::print("  metrics: {0}/metrics.csv  eval: {0}/eval.csv  summary: {0}/summary.json\n",
               r.run_dir);
    if (r.profile)
      fmt::print("\n{}  (all rows: {}/profile_step.csv)\n", format_step_profile(*r.profile),
                 r.run_dir);
    if (!*no_plot) {
      std::string prefix = r.run_dir + "/plots";
      if (draw_plots(prefix, {r.run_dir})) fmt::print("  plots: {}_*.png / .svg\n", prefix);
    }
  });
}

}  // namespace kimi::cli
