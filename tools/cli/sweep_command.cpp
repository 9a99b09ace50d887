// `kimi-lab sweep SWEEP.yaml`: a grid of runs (trainer/sweep.h), resumable, with summary.csv
// (one row per run, dotted config columns) and the accuracy plots over all points.
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/tensor/error.h"
#include "tools/cli/commands.h"
#include "tools/cli/plotting.h"
#include "trainer/sweep.h"

namespace kimi::cli {
namespace {

namespace fs = std::filesystem;

void print_plan(const SweepReport& rep, const SweepOptions& opt) {
  const std::vector<bool> take = chosen_points(opt, rep.points.size());
  const auto& s = rep.spec;
  fmt::print("sweep {}: {} points, base {}, directory {}\n", s.name, rep.points.size(),
             s.base.empty() ? "(defaults)" : s.base, s.dir());
  if (!s.overrides.empty()) fmt::print("every run: {}\n", fmt::join(s.overrides, " "));
  if (!rep.spec_change.empty())
    fmt::print(
        "the sweep changed since {} was started ({}); a real run needs a new name or --force\n",
        s.dir(), rep.spec_change);
  size_t width = 4;
  for (const auto& p : rep.points) width = std::max(width, p.name.size());
  for (size_t i = 0; i < rep.points.size(); ++i) {
    const auto& p = rep.points[i];
    const bool chosen = take[i];
    std::string values;
    for (const auto& [key, value] : p.values) {
      values += " " + key + "=" + value;
      // A row is a set of overrides: show them, the row's name alone says little.
      if (key == kRowKey)
        for (const auto& axis : s.grid)
          for (size_t r = 0; axis.key == kRowKey && r < axis.labels.size(); ++r)
            if (axis.labels[r] == value)
              values += fmt::format(" ({})", fmt::join(axis.row_overrides[r], " "));
    }
    fmt::print("  {}{:>3}  {:<{}}  {:<13}{}\n", chosen ? ' ' : '-', p.index, p.name, width,
               state_name(rep.states[i]), values);
  }
}

// The summary rows as a short table: run, status, steps, last and best accuracy per length.
void print_summary(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "summary.jsonl");
  fmt::print("\n{:<28} {:<13} {:>6} {:>9}  accuracy (last / best)\n", "run", "status", "steps",
             "loss");
  for (std::string line; std::getline(in, line);) {
    const auto row = nlohmann::ordered_json::parse(line);
    std::string accs;
    for (const auto& [key, value] : row.items())
      if (key.rfind("acc@T", 0) == 0 && !value.is_null()) {
        const auto best = row.value("best_" + key, nlohmann::ordered_json());
        accs += fmt::format("  T={} {:.3f} / {:.3f}", key.substr(5), value.get<double>(),
                            best.is_number() ? best.get<double>() : 0.0);
      }
    const auto num = [&](const char* k) {
      return row.contains(k) && row[k].is_number() ? fmt::format("{:.4g}", row[k].get<double>())
                                                   : "-";
    };
    fmt::print("{:<28} {:<13} {:>6} {:>9}{}\n", row.value("run", ""), row.value("status", ""),
               num("steps_done"), num("final_loss"), accs);
  }
}

// One line per seed group with more than one run: mean +- sd over its seeds, per length, so a
// sweep over seeds is read as the mean, not as its luckiest seed.
void print_groups(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "summary.jsonl");
  std::map<std::string, std::string> lines;
  for (std::string line; std::getline(in, line);) {
    const auto row = nlohmann::ordered_json::parse(line);
    if (row.value("group_runs", 0) < 2) continue;
    std::string accs;
    for (const auto& [key, value] : row.items())
      if (key.rfind("best_acc_mean@T", 0) == 0 && value.is_number()) {
        const std::string len = key.substr(15);
        const auto sd = row.value("best_acc_sd@T" + len, nlohmann::ordered_json());
        accs += fmt::format("  T={} {:.3f} +- {:.3f} (n={})", len, value.get<double>(),
                            sd.is_number() ? sd.get<double>() : 0.0,
                            row.value("best_acc_n@T" + len, 0));
      }
    lines[row.value("group", "")] = accs;
  }
  if (lines.empty()) return;
  fmt::print("\n{:<28} best accuracy, mean +- sd over seeds (n = seeds with a result)\n",
             "setting");
  for (const auto& [group, accs] : lines) fmt::print("{:<28}{}\n", group, accs);
}

}  // namespace

void register_sweep(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "sweep",
      "Train a grid of runs from a sweep file (base config, overrides, grid of key -> values; see\n"
      "experiments/sweep_quick.yaml). Every point is validated before any run starts. Running it\n"
      "again skips finished points and resumes interrupted ones. Writes <out_dir>/<name>/:\n"
      "one run directory per point, summary.csv, summary.jsonl, sweep.json, sweep.log, plots_*.\n"
      "With --jobs N, N points train at once in child processes (one GPU each when several are\n"
      "visible, else sharing the device), each logging to <point>/worker.log.\n"
      "Example: kimi-lab sweep experiments/sweep_quick.yaml --dry-run");
  auto file = std::make_shared<std::string>();
  auto opt = std::make_shared<SweepOptions>();
  auto no_plot = std::make_shared<bool>(false);
  auto no_progress = std::make_shared<bool>(false);
  cmd->add_option("sweep_file", *file, "the sweep YAML")->required();
  cmd->add_flag("--dry-run", opt->dry_run,
                "list the points, their overrides and state; train nothing");
  cmd->add_option("--only", opt->only,
                  "train only these point indices (0-based, as --dry-run lists them), e.g. 0,2")
      ->delimiter(',');
  auto shard = std::make_shared<std::string>();
  cmd->add_option("--shard", *shard,
                  "I/N: train only the points whose index is I modulo N (with --only: of those),\n"
                  "so N processes or machines split one sweep; tools/slurm_sweep.sh runs it as a\n"
                  "job array. Shards sharing the directory write a merged summary as they finish");
  cmd->add_flag("--summarize", opt->summarize,
                "train nothing: rewrite summary.csv / summary.jsonl (and the plots) from the run\n"
                "directories present, e.g. after copying in the points other machines trained");
  cmd->add_option("--device", opt->device,
                  "cpu | cuda | auto (default: each config's train.device)");
  cmd->add_flag(
      "--force", opt->force,
      "accept a changed sweep file for an existing sweep directory: points whose config is\n"
      "unchanged are kept, the others are retrained from scratch");
  cmd->add_option(
      "--stop-at", opt->stop_at,
      "checkpoint and stop every point at this step; running the sweep again resumes them");
  cmd->add_option("--jobs", opt->jobs,
                  "points trained at once, each in its own process (default 1). With n > 1\n"
                  "GPUs visible and CUDA_VISIBLE_DEVICES unset, child k runs on GPU k mod n;\n"
                  "otherwise the children share the device and split the CPU cores. Child logs\n"
                  "go to <point>/worker.log; a failed point does not stop the others; Ctrl-C\n"
                  "is passed to the children (their points resume on the next run)")
      ->capture_default_str();
  cmd->add_flag("--mps", opt->mps,
                "with --jobs N on one GPU: run the children under a CUDA MPS daemon (the one\n"
                "CUDA_MPS_PIPE_DIRECTORY names, else a private one started and stopped with the\n"
                "sweep) so their kernels run at once; without it they time-slice the GPU and\n"
                "small models gain nothing from N > 1 (results/sweep_jobs)");
  auto worker_point = std::make_shared<int>(-1);
  // Internal: the child side of --jobs (one point, no summaries or plots); hidden from --help.
  cmd->add_option("--worker-point", *worker_point)->group("");
  cmd->add_flag("--no-plot", *no_plot, "do not draw the plots at the end");
  cmd->add_flag("--no-progress", *no_progress, "plain log lines instead of a progress bar");
  cmd->callback([file, opt, no_plot, no_progress, worker_point, shard] {
    opt->progress = !*no_progress;
    if (!shard->empty()) opt->shard = parse_shard(*shard);
    if (opt->summarize && (opt->dry_run || !opt->only.empty() || !shard->empty()))
      throw UserError("--summarize reads every point; it takes no --dry-run, --only or --shard");
    if (*worker_point >= 0) {
      opt->progress = false;
      const int status = run_sweep_point(*file, *worker_point, *opt);
      if (status != 0) std::exit(status);
      return;
    }
    opt->worker_command = {fs::read_symlink("/proc/self/exe").string(), "sweep"};
    opt->worker_command.push_back("--no-progress");  // children log to worker.log
    SweepReport rep = run_sweep(*file, *opt);
    if (opt->dry_run) {
      print_plan(rep, *opt);
      return;
    }
    const std::string dir = rep.spec.dir();
    print_summary(dir);
    print_groups(dir);
    if (rep.interrupted_by != 0) {
      // The children are stopped and the summaries written; end as the signal would have.
      spdlog::warn("sweep interrupted; run it again to resume");
      std::signal(rep.interrupted_by, SIG_DFL);
      std::raise(rep.interrupted_by);
    }
    fmt::print(
        "\nsweep directory: {0}  ({1:.0f} s)\n  summary: {0}/summary.csv  {0}/summary.jsonl\n", dir,
        rep.wall_s);
    if (!*no_plot && !rep.finished_dirs.empty()) {
      const std::string prefix = dir + "/plots";
      if (draw_plots(prefix, rep.finished_dirs)) fmt::print("  plots: {}_*.png / .svg\n", prefix);
    }
    if (!rep.failures.empty()) {
      size_t attempted = 0;
      for (auto a : rep.actions)
        attempted +=
            a == PointAction::kTrained || a == PointAction::kResumed || a == PointAction::kFailed;
      for (const auto& f : rep.failures) spdlog::warn("failed: {}", f);
      if (rep.failures.size() == attempted)
        throw UserError(
            fmt::format("every point trained this time failed; the first: {}", rep.failures[0]));
    }
  });
}

}  // namespace kimi::cli
