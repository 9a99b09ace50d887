// run_sweep (trainer/sweep.h): validate every point, check the sweep directory against the
// stored spec (sweep.json), then train the selected points through run_training (in this
// process, or --jobs child processes: sweep_workers.cpp), skipping finished ones and resuming
// interrupted ones from their checkpoints, each under an exclusive lock on its directory.
#include "trainer/sweep.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "trainer/dir_lock.h"
#include "trainer/metrics_writer.h"
#include "trainer/mps_daemon.h"
#include "trainer/run_lock.h"
#include "trainer/sweep_workers.h"
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
  bool foreign = false;  // a .lock alone is ours: left by a sweep killed before sweep.json
  if (fs::is_directory(dir))
    for (const auto& entry : fs::directory_iterator(dir))
      foreign = foreign || entry.path().filename() != ".lock";
  if (foreign)
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
  req.caller_holds_lock = true;  // visit_point_locked holds p.dir's lock
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

// Empties a point's directory for a fresh start but keeps its .lock file, which this process
// holds: removing it would let another process lock a new one beside ours.
void clear_point_dir(const std::string& dir) {
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename() != ".lock") fs::remove_all(entry.path());
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

}  // namespace

namespace sweep_detail {

PointOutcome visit_point_locked(const SweepSpec& spec, const SweepPoint& p, bool stale,
                                const SweepOptions& opt, const std::string& tag) {
  PointOutcome out;
  fs::create_directories(p.dir);
  DirLock lock;
  if (!DirLock::try_lock(p.dir, DirLock::Mode::kExclusive, &lock)) {
    spdlog::warn("{} in use by another kimi-lab process; skipped", tag);
    out.action = PointAction::kSkipped;
    out.locked = true;
    return out;
  }
  PointState state = point_state(p);  // again, under the lock: another process may have run it
  if (stale && run_dir_difference(p).empty()) stale = false;
  if (stale) {
    spdlog::warn("{} its config changed; retraining from scratch", tag);
    clear_point_dir(p.dir);
    state = PointState::kPending;
  }
  if (state == PointState::kDone || state == PointState::kStoppedEarly ||
      state == PointState::kFailed) {
    spdlog::info("{} {} earlier, skipped{}", tag,
                 state == PointState::kFailed ? "failed" : "finished",
                 state == PointState::kFailed ? " (delete its directory to train it again)" : "");
    out.action = PointAction::kSkipped;
    return out;
  }
  std::string values;
  for (const auto& [key, value] : p.values)
    values += (values.empty() ? "" : " ") + key + "=" + value;
  spdlog::info("{} {} ({})", tag, state == PointState::kInterrupted ? "resuming" : "training",
               values);
  out.action = train_point(spec, p, state, opt, tag, out.failure);
  return out;
}

std::string progress_text(size_t done, size_t total, size_t running, double elapsed_s,
                          double mean_point_s, int jobs) {
  std::string text = fmt::format("{}/{} points done", done, total);
  if (running > 0) text += fmt::format(", {} running", running);
  if (done < total && mean_point_s > 0) {
    // Points still to start plus the running ones at half their mean time, `jobs` at once.
    const double left = static_cast<double>(total - done - running) * mean_point_s +
                        0.5 * static_cast<double>(running) * mean_point_s;
    text += fmt::format(", ETA {}", duration_text(left / std::max(1, jobs)));
  }
  return text + fmt::format(" ({} elapsed)", duration_text(elapsed_s));
}

std::string duration_text(double s) {
  if (s < 90) return fmt::format("{:.0f} s", s);
  if (s < 5400) return fmt::format("{:.0f} min", s / 60);
  return fmt::format("{:.1f} h", s / 3600);
}

}  // namespace sweep_detail

namespace {

// Points this call has to visit: chosen ones not finished (or stale under --force).
std::vector<size_t> points_to_visit(const SweepReport& rep, const std::vector<bool>& chosen,
                                    const std::vector<bool>& stale) {
  std::vector<size_t> todo;
  for (size_t i = 0; i < rep.points.size(); ++i) {
    if (!chosen[i]) continue;
    const PointState s = rep.states[i];
    const bool finished =
        s == PointState::kDone || s == PointState::kStoppedEarly || s == PointState::kFailed;
    if (!finished || stale[i]) todo.push_back(i);
  }
  return todo;
}

// --jobs 1: one point after another in this process, the summaries rewritten after each.
void run_in_process(SweepReport& rep, const std::vector<bool>& chosen,
                    const std::vector<bool>& stale, const SweepOptions& opt) {
  const std::vector<size_t> todo = points_to_visit(rep, chosen, stale);
  const auto t0 = std::chrono::steady_clock::now();
  size_t done = 0;
  double trained_s = 0;
  size_t trained = 0;
  for (size_t i = 0; i < rep.points.size(); ++i) {
    if (!chosen[i]) continue;
    const SweepPoint& p = rep.points[i];
    const std::string tag = fmt::format("[{}/{}] {}:", i + 1, rep.points.size(), p.name);
    const bool visit = std::find(todo.begin(), todo.end(), i) != todo.end();
    if (!visit) {
      rep.actions[i] = PointAction::kSkipped;
      spdlog::info("{} {} earlier, skipped", tag,
                   rep.states[i] == PointState::kFailed ? "failed" : "finished");
      continue;
    }
    const auto t1 = std::chrono::steady_clock::now();
    const auto out = sweep_detail::visit_point_locked(rep.spec, p, stale[i], opt, tag);
    rep.actions[i] = out.action;
    if (out.locked) rep.locked.push_back(p.name);
    if (!out.failure.empty()) rep.failures.push_back(fmt::format("{}: {}", p.name, out.failure));
    if (out.action != PointAction::kSkipped) {
      trained_s += seconds_since(t1);
      ++trained;
    }
    ++done;
    rep.finished_dirs = write_sweep_summary(rep.spec.dir(), rep.points);
    spdlog::info("sweep: {}", sweep_detail::progress_text(
                                  done, todo.size(), 0, seconds_since(t0),
                                  trained ? trained_s / static_cast<double>(trained) : 0, 1));
  }
}

}  // namespace

Shard parse_shard(const std::string& text) {
  Shard s;
  const size_t slash = text.find('/');
  auto whole = [](const std::string& t, int* v) {
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), *v);
    return !t.empty() && ec == std::errc() && end == t.data() + t.size();
  };
  if (slash == std::string::npos || !whole(text.substr(0, slash), &s.index) ||
      !whole(text.substr(slash + 1), &s.count) || s.count < 1 || s.index < 0 || s.index >= s.count)
    throw UserError(fmt::format(
        "--shard {}: give I/N with 0 <= I < N (this process's share of N, e.g. 0/4)", text));
  return s;
}

std::vector<bool> chosen_points(const SweepOptions& opt, size_t n) {
  std::vector<bool> chosen(n, opt.only.empty());
  for (int i : opt.only) {
    if (i < 0 || static_cast<size_t>(i) >= n)
      throw UserError(fmt::format("--only {}: the sweep has points 0..{}", i, n - 1));
    chosen[i] = true;
  }
  for (size_t i = 0; i < n; ++i)
    chosen[i] = chosen[i] && static_cast<int>(i % opt.shard.count) == opt.shard.index;
  return chosen;
}

SweepReport run_sweep(const std::string& sweep_file, const SweepOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  SweepReport rep;
  rep.spec = load_sweep_spec(sweep_file);
  rep.points = expand_grid(rep.spec);
  validate_points(rep.spec, rep.points);  // every point, before anything runs
  const std::vector<bool> chosen = chosen_points(opt, rep.points.size());
  const std::string dir = rep.spec.dir();
  const nlohmann::json current = spec_json(rep.spec, rep.points);
  const nlohmann::json stored = stored_spec(dir);
  if (!stored.is_null()) rep.spec_change = spec_difference(stored, current);
  for (const auto& p : rep.points) rep.states.push_back(point_state(p));
  rep.actions.assign(rep.points.size(), PointAction::kNotSelected);
  if (opt.dry_run) return rep;
  if (opt.summarize) {
    if (stored.is_null())
      throw UserError(
          fmt::format("--summarize: {} has no sweep.json (run the sweep, or copy "
                      "its directory here, first)",
                      dir));
    const DirLock sweep_lock = lock_sweep_dir(dir);
    rep.finished_dirs = write_sweep_summary(dir, rep.points);
    rep.wall_s = seconds_since(t0);
    return rep;
  }
  if (opt.jobs < 1) throw UserError(fmt::format("--jobs {}: give 1 or more", opt.jobs));
  if (opt.jobs > 1 && opt.worker_command.empty())
    throw UserError("--jobs > 1 needs a worker command (the kimi-lab binary)");
  if (opt.mps && opt.jobs < 2)
    throw UserError("--mps shares one GPU among the --jobs children: give --jobs 2 or more");
  const std::vector<bool> stale = check_sweep(sweep_file, rep, chosen, opt);
  if (opt.mps && std::all_of(rep.points.begin(), rep.points.end(), [&](const SweepPoint& p) {
        return (opt.device.empty() ? p.config.train.device : opt.device) == "cpu";
      }))
    throw UserError(
        "--mps shares a GPU, but every point runs on the CPU (train.device / --device)");

  fs::create_directories(dir);
  // Shared, not exclusive: disjoint --only runs and the --jobs children (run_sweep_point) take
  // the same shared lock while this process holds it.
  const DirLock sweep_lock = lock_sweep_dir(dir);
  if (stored.is_null() || !rep.spec_change.empty()) {
    write_json_atomic((fs::path(dir) / "sweep.json").string(), current);
    io::write_file_atomic((fs::path(dir) / "sweep.yaml").string(), read_text(sweep_file));
  }
  spdlog::set_default_logger(sweep_logger(dir));
  if (!rep.spec_change.empty())
    spdlog::warn("--force: the sweep changed ({}); stored the new spec", rep.spec_change);
  if (opt.jobs > 1) {
    const std::vector<size_t> todo = points_to_visit(rep, chosen, stale);
    for (size_t i = 0; i < rep.points.size(); ++i)
      if (chosen[i] && std::find(todo.begin(), todo.end(), i) == todo.end())
        rep.actions[i] = PointAction::kSkipped;  // finished or failed earlier
    std::optional<MpsDaemon> mps;
    if (opt.mps && !todo.empty()) mps.emplace();
    sweep_detail::run_in_workers(rep, todo, stale, sweep_file, opt);
  } else {
    run_in_process(rep, chosen, stale, opt);
  }
  rep.finished_dirs = write_sweep_summary(dir, rep.points);
  rep.wall_s = seconds_since(t0);
  spdlog::info("sweep {}: {} of {} runs in {}/summary.csv ({:.0f} s)", rep.spec.name,
               rep.finished_dirs.size(), rep.points.size(), dir, rep.wall_s);
  return rep;
}

int run_sweep_point(const std::string& sweep_file, int index, const SweepOptions& opt) {
  const SweepSpec spec = load_sweep_spec(sweep_file);
  const std::vector<SweepPoint> points = expand_grid(spec);
  if (index < 0 || static_cast<size_t>(index) >= points.size())
    throw UserError(
        fmt::format("--worker-point {}: the sweep has points 0..{}", index, points.size() - 1));
  std::vector<SweepPoint> one = {points[static_cast<size_t>(index)]};
  validate_points(spec, one);
  const SweepPoint& p = one[0];
  const nlohmann::json stored = stored_spec(spec.dir());
  if (stored.is_null())
    throw UserError(
        fmt::format("{}: no sweep.json; start the sweep without --worker-point", spec.dir()));
  // The parent stored the spec it validated; a sweep file edited since must not train here.
  const nlohmann::json& sp = stored.value("points", nlohmann::json::array());
  const nlohmann::json want = flatten_dotted(to_json(p.config));
  bool same = static_cast<size_t>(index) < sp.size() && sp[index].value("name", "") == p.name;
  if (same && sp[index].contains("config"))
    for (const auto& [key, value] : want.items())
      same = same && (!sp[index]["config"].contains(key) || sp[index]["config"][key] == value);
  if (!same)
    throw UserError(
        fmt::format("{}: sweep point {} ({}) differs from {}/sweep.json; the sweep "
                    "file changed after the sweep started",
                    sweep_file, index, p.name, spec.dir()));
  const DirLock sweep_lock = lock_sweep_dir(spec.dir());
  const std::string tag = fmt::format("[{}/{}] {}:", index + 1, points.size(), p.name);
  const auto out = sweep_detail::visit_point_locked(spec, p, false, opt, tag);
  if (out.locked) return kPointLockedStatus;
  return out.action == PointAction::kFailed ? 1 : 0;
}

}  // namespace kimi
