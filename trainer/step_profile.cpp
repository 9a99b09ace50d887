#include "trainer/step_profile.h"

#include <fmt/format.h>

#include "trainer/metrics_writer.h"

namespace kimi {

void write_step_profile(const std::string& path, const StepProfile& p) {
  CsvTable t(path, {"step", "op", "pass", "calls", "ms", "share", "us_per_call"});
  for (const profile::OpTime& r : p.rows)
    t.add_row({p.step, r.op, r.pass, r.calls, r.ms, p.profiled_ms > 0 ? r.ms / p.profiled_ms : 0.0,
               r.calls > 0 ? 1e3 * r.ms / static_cast<double>(r.calls) : 0.0});
  t.flush();
}

std::string format_step_profile(const StepProfile& p, double min_share) {
  std::string out = fmt::format(
      "step {} op by op: {:.3f} ms profiled (the device synchronised at every op boundary){}\n",
      p.step, p.profiled_ms,
      p.unprofiled_ms > 0 ? fmt::format("; step {} ran in {:.3f} ms", p.step - 1, p.unprofiled_ms)
                          : std::string());
  out += fmt::format("  {:<24} {:<9} {:>6} {:>10} {:>7} {:>10}\n", "op", "pass", "calls", "ms",
                     "share", "us/call");
  double rest_ms = 0;
  int64_t rest_rows = 0;
  for (const profile::OpTime& r : p.rows) {
    const double share = p.profiled_ms > 0 ? r.ms / p.profiled_ms : 0;
    if (share < min_share) {
      rest_ms += r.ms;
      ++rest_rows;
      continue;
    }
    out += fmt::format("  {:<24} {:<9} {:>6} {:>10.3f} {:>6.1f}% {:>10}\n", r.op, r.pass,
                       r.calls == 0 ? std::string("-") : std::to_string(r.calls), r.ms, 100 * share,
                       r.calls > 0 ? fmt::format("{:.1f}", 1e3 * r.ms / r.calls) : "-");
  }
  if (rest_rows > 0)
    out += fmt::format("  {:<24} {:<9} {:>6} {:>10.3f} {:>6.1f}% {:>10}\n",
                       fmt::format("({} more rows)", rest_rows), "", "", rest_ms,
                       p.profiled_ms > 0 ? 100 * rest_ms / p.profiled_ms : 0.0, "");
  return out;
}

}  // namespace kimi
