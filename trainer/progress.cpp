// Terminal progress bar, redrawn in place with a carriage return.
#include "trainer/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace kimi {

ProgressBar::ProgressBar(int64_t total, int64_t start, bool enabled)
    : total_(total), start_(start), enabled_(enabled), t0_(std::chrono::steady_clock::now()) {}

bool ProgressBar::stderr_is_tty() { return isatty(fileno(stderr)) != 0; }

static std::string format_eta(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "--:--";
  int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{:02}:{:02}", s / 60, s % 60);
}

void ProgressBar::update(int64_t step, const std::string& fields) {
  if (!enabled_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const double done = static_cast<double>(step - start_);
  const double eta = done > 0 ? elapsed / done * static_cast<double>(total_ - step) : -1;
  const int width = 24;
  const int filled = total_ > 0 ? static_cast<int>(width * step / total_) : width;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  fmt::print(stderr, "\r[{}] {}/{} {} eta {}\x1b[K", bar, step, total_, fields, format_eta(eta));
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (enabled_ && drawn_) fmt::print(stderr, "\n");
  drawn_ = false;
}

}  // namespace kimi
