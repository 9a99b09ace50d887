// run_sweep (trainer/sweep.h): validate every point, check the sweep directory against the
// stored spec (sweep.json), then train the selected points through run_training (in this
// process: sweep_in_process.cpp, or --jobs child processes: sweep_workers.cpp), skipping finished
// ones and resuming interrupted ones from their checkpoints, each under an exclusive lock on its
// directory (sweep_point.cpp).
#include "trainer/sweep.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <optional>
#include <set>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "trainer/dir_lock.h"
#include "trainer/metrics_writer.h"
#include "trainer/mps_daemon.h"
#include "trainer/run_lock.h"
#include "trainer/sweep_internal.h"
#include "trainer/sweep_workers.h"
#include "trainer/trainer.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;
using sweep_detail::points_to_visit;
using sweep_detail::read_text;
using sweep_detail::run_dir_difference;
using sweep_detail::run_in_process;
using sweep_detail::seconds_since;

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
