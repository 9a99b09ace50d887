// --jobs 1 (trainer/sweep_internal.h): the chosen points one after another in this process, each
// visited under its lock (sweep_point.cpp), the summaries rewritten after each; and the progress
// line that --jobs N (sweep_workers.cpp) prints too.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "trainer/sweep.h"
#include "trainer/sweep_internal.h"
#include "trainer/sweep_workers.h"

namespace kimi::sweep_detail {

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

}  // namespace kimi::sweep_detail
