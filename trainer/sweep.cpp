// run_sweep (trainer/sweep.h): validate every point, check the sweep directory against the
// stored spec (sweep.json), then train the selected points one after another through
// run_training, skipping finished ones and resuming interrupted ones from their checkpoints.
#include "trainer/sweep.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "trainer/metrics_writer.h"
#include "trainer/trainer.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The stored sweep.json, or null when the sweep directory is new. A directory that exists with
// files but no sweep.json is someone else's: refuse it.
nlohmann::json stored_spec(const std::string& dir) {
  const fs::path path = fs::path(dir) / "sweep.json";
  if (fs::exists(path)) {
    try {
      return nlohmann::json::parse(read_text(path));
    } catch (const nlohmann::json::exception& e) {
      throw UserError(fmt::format("{}: unreadable ({}); move the sweep directory aside",
                                  path.string(), e.what()));
    }
  }
  if (fs::is_directory(dir) && !fs::is_empty(dir))
    throw UserError(
        fmt::format("{} exists and is not a sweep directory (no sweep.json); set another "
                    "name in the sweep file",
                    dir));
  return nullptr;
}

// Routes spdlog to stderr and <sweep dir>/sweep.log; run_training swaps in each run's own
// logger, and this one is put back after every point.
std::shared_ptr<spdlog::logger> sweep_logger(const std::string& dir) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto file =
      std::make_shared<spdlog::sinks::basic_file_sink_mt>((fs::path(dir) / "sweep.log").string());
  auto logger = std::make_shared<spdlog::logger>("sweep", spdlog::sinks_init_list{console, file});
  logger->set_level(spdlog::get_level());
  logger->flush_on(spdlog::level::info);
  return logger;
}

// The keys where the run directory's config.yaml disagrees with the point's config ("" = none).
std::string run_dir_difference(const SweepPoint& p) {
  const fs::path cfg = fs::path(p.dir) / "config.yaml";
  if (!fs::exists(cfg)) return "";
  const nlohmann::json have = flatten_dotted(to_json(load_config(cfg.string(), {})));
  const nlohmann::json want = flatten_dotted(to_json(p.config));
  for (const auto& [key, value] : want.items())
    if (have.contains(key) && have[key] != value)
      return fmt::format("{} is {} there, {} in the sweep", key, have[key].dump(), value.dump());
  return "";
}

std::vector<bool> selection(const std::vector<int>& only, size_t n) {
  std::vector<bool> chosen(n, only.empty());
  for (int i : only) {
    if (i < 0 || static_cast<size_t>(i) >= n)
      throw UserError(fmt::format("--only {}: the sweep has points 0..{}", i, n - 1));
    chosen[i] = true;
  }
  return chosen;
}

std::string last_eval_text(const RunResult& r) {
  std::string out;
  for (const auto& e : r.last_eval) out += fmt::format(", acc@T{} {:.4f}", e.seq_len, e.accuracy);
  return out;
}

// Trains (or resumes) one point; a failure is written to failed.txt and returned as text.
PointAction train_point(const SweepSpec& spec, const SweepPoint& p, PointState state,
                        const SweepOptions& opt, const std::string& tag, std::string& failure) {
  RunRequest req;
  req.device = opt.device;
  req.progress = opt.progress;
  req.stop_at = opt.stop_at;
  const bool resume = state == PointState::kInterrupted;
  if (resume) {
    req.resume_dir = p.dir;
  } else {
    req.config_path = spec.base;
    req.overrides = p.overrides;
    req.out_dir = p.dir;
  }
  auto logger = spdlog::default_logger();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    RunResult r = run_training(req);
    spdlog::set_default_logger(logger);
    spdlog::info("{} {} steps{} in {:.0f} s: loss {:.4f}{}", tag, r.steps_done,
                 r.stopped_early ? " (target accuracy reached)" : "", seconds_since(t0),
                 r.final_loss, last_eval_text(r));
    return resume ? PointAction::kResumed : PointAction::kTrained;
  } catch (const RunDirUnavailable& e) {  // another sweep process trains it: not a failure
    spdlog::set_default_logger(logger);
    spdlog::warn("{} skipped: {}", tag, e.what());
    return PointAction::kSkipped;
  } catch (const std::exception& e) {
    spdlog::set_default_logger(logger);
    failure = e.what();
    io::write_file_atomic((fs::path(p.dir) / "failed.txt").string(), failure + "\n");
    spdlog::error("{} failed after {:.0f} s: {}", tag, seconds_since(t0), failure);
    return PointAction::kFailed;
  }
}

}  // namespace

const char* state_name(PointState state) {
  switch (state) {
    case PointState::kPending: return "pending";
    case PointState::kInterrupted: return "interrupted";
    case PointState::kDone: return "done";
    case PointState::kStoppedEarly: return "stopped_early";
    case PointState::kFailed: return "failed";
  }
  return "?";
}

PointState point_state(const SweepPoint& p) {
  const fs::path dir(p.dir);
  if (!fs::exists(dir / "config.yaml")) return PointState::kPending;
  if (fs::exists(dir / "failed.txt")) return PointState::kFailed;
  if (!fs::exists(dir / "summary.json")) return PointState::kInterrupted;
  nlohmann::json s;
  try {
    s = nlohmann::json::parse(read_text(dir / "summary.json"));
  } catch (const nlohmann::json::exception&) {
    return PointState::kInterrupted;  // summary.json is written atomically; treat as unfinished
  }
  if (s.value("stopped_early", false)) return PointState::kStoppedEarly;
  // summary.json is also written when a run pauses at --stop-at: finished means all steps.
  if (s.value("steps_done", int64_t{-1}) == p.config.train.steps) return PointState::kDone;
  return PointState::kInterrupted;
}

namespace {

// Before anything trains: the sweep directory against the stored spec, the devices, and each
// selected point's run directory against its config. Returns the points to retrain from scratch
// (--force); without --force any mismatch is an error.
std::vector<bool> check_sweep(const std::string& sweep_file, const SweepReport& rep,
                              const std::vector<bool>& chosen, const SweepOptions& opt) {
  if (!rep.spec_change.empty() && !opt.force)
    throw UserError(
        fmt::format("{}: the sweep changed since {} was started ({}); set a new name in the "
                    "sweep file, or rerun with --force to keep the unchanged points and retrain "
                    "the rest",
                    sweep_file, rep.spec.dir(), rep.spec_change));
  std::set<std::string> devices;  // a missing device fails here, not at the first point
  for (const auto& p : rep.points)
    devices.insert(opt.device.empty() ? p.config.train.device : opt.device);
  for (const auto& d : devices) resolve_device(d);
  std::vector<bool> stale(rep.points.size(), false);
  for (size_t i = 0; i < rep.points.size(); ++i) {
    if (!chosen[i] || rep.states[i] == PointState::kPending) continue;
    const std::string diff = run_dir_difference(rep.points[i]);
    if (!diff.empty() && !opt.force)
      throw UserError(
          fmt::format("{}: its config.yaml differs from the sweep's ({}); rerun with --force "
                      "to retrain it",
                      rep.points[i].dir, diff));
    stale[i] = !diff.empty();
  }
  return stale;
}

// Skips, trains or resumes point i, then rewrites the summaries.
PointAction visit_point(SweepReport& rep, size_t i, bool stale, const SweepOptions& opt) {
  const SweepPoint& p = rep.points[i];
  const std::string tag = fmt::format("[{}/{}] {}:", i + 1, rep.points.size(), p.name);
  PointState state = rep.states[i];
  if (stale) {
    spdlog::warn("{} its config changed; retraining from scratch", tag);
    fs::remove_all(p.dir);
    state = PointState::kPending;
  }
  if (state == PointState::kDone || state == PointState::kStoppedEarly ||
      state == PointState::kFailed) {
    spdlog::info("{} {} earlier, skipped{}", tag,
                 state == PointState::kFailed ? "failed" : "finished",
                 state == PointState::kFailed ? " (delete its directory to train it again)" : "");
    return PointAction::kSkipped;
  }
  std::string values;
  for (const auto& [key, value] : p.values)
    values += (values.empty() ? "" : " ") + key + "=" + value;
  spdlog::info("{} {} ({})", tag, state == PointState::kInterrupted ? "resuming" : "training",
               values);
  std::string failure;
  const PointAction action = train_point(rep.spec, p, state, opt, tag, failure);
  if (!failure.empty()) rep.failures.push_back(fmt::format("{}: {}", p.name, failure));
  rep.finished_dirs = write_sweep_summary(rep.spec.dir(), rep.points);
  return action;
}

}  // namespace

SweepReport run_sweep(const std::string& sweep_file, const SweepOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  SweepReport rep;
  rep.spec = load_sweep_spec(sweep_file);
  rep.points = expand_grid(rep.spec);
  validate_points(rep.spec, rep.points);  // every point, before anything runs
  const std::vector<bool> chosen = selection(opt.only, rep.points.size());
  const std::string dir = rep.spec.dir();
  const nlohmann::json current = spec_json(rep.spec, rep.points);
  const nlohmann::json stored = stored_spec(dir);
  if (!stored.is_null()) rep.spec_change = spec_difference(stored, current);
  for (const auto& p : rep.points) rep.states.push_back(point_state(p));
  rep.actions.assign(rep.points.size(), PointAction::kNotSelected);
  if (opt.dry_run) return rep;
  const std::vector<bool> stale = check_sweep(sweep_file, rep, chosen, opt);

  fs::create_directories(dir);
  const DirLock sweep_lock = lock_sweep_dir(dir);  // shared: disjoint --only may share the dir
  if (stored.is_null() || !rep.spec_change.empty()) {
    write_json_atomic((fs::path(dir) / "sweep.json").string(), current);
    io::write_file_atomic((fs::path(dir) / "sweep.yaml").string(), read_text(sweep_file));
  }
  spdlog::set_default_logger(sweep_logger(dir));
  if (!rep.spec_change.empty())
    spdlog::warn("--force: the sweep changed ({}); stored the new spec", rep.spec_change);
  for (size_t i = 0; i < rep.points.size(); ++i)
    if (chosen[i]) rep.actions[i] = visit_point(rep, i, stale[i], opt);
  rep.finished_dirs = write_sweep_summary(dir, rep.points);
  rep.wall_s = seconds_since(t0);
  spdlog::info("sweep {}: {} of {} runs in {}/summary.csv ({:.0f} s)", rep.spec.name,
               rep.finished_dirs.size(), rep.points.size(), dir, rep.wall_s);
  return rep;
}

}  // namespace kimi
