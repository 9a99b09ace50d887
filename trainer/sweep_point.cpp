// One sweep point (trainer/sweep.h, sweep_workers.h): where it stands on disk, and its visit under
// the exclusive lock on its directory, which trains, resumes or skips it. Both run_sweep's
// in-process loop and a --jobs child (run_sweep_point) come here.
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "trainer/dir_lock.h"
#include "trainer/run_lock.h"
#include "trainer/sweep.h"
#include "trainer/sweep_internal.h"
#include "trainer/sweep_workers.h"
#include "trainer/trainer.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;
using sweep_detail::read_text;
using sweep_detail::seconds_since;

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

namespace sweep_detail {

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

}  // namespace sweep_detail
}  // namespace kimi
