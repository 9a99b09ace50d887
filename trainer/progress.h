// A one-line progress bar on a terminal (step, fields, ETA); plain log lines otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace kimi {

class ProgressBar {
 public:
  // enabled=false: update() does nothing (the trainer logs lines instead).
  ProgressBar(int64_t total, int64_t start, bool enabled);
  void update(int64_t step, const std::string& fields);
  void finish();
  bool enabled() const { return enabled_; }
  // True when stderr is a terminal.
  static bool stderr_is_tty();

 private:
  int64_t total_, start_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace kimi
