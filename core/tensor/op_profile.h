// Where a stretch of work (one training step) spends its time, op by op, as PyTorch's profiler
// tables it: while an OpProfiler is alive on a thread, each op's forward runs from its first
// kernel dispatch (mark_op, called by kernels<F>() and the copying views) to the next op's, and
// each autograd node's backward from its start to its end (BackwardScope, in run_backward; the
// ops it runs inside count as its own), and each copy a view makes (CopyScope). The device is
// synchronised at every boundary, so a span is the op's kernels plus its launches; work outside any
// op (data, the optimizer's host side) falls into "(outside ops)". Off, a boundary costs one
// thread-local load.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace kimi::profile {

struct OpTime {
  std::string op;    // the op's name ("linear", "delta_rule"), or "(outside ops)"
  std::string pass;  // "forward", "backward" (an autograd node's), "step" (the optimizer's), "-"
  int64_t calls = 0;
  double ms = 0;  // summed over the calls
};

class OpProfiler {
 public:
  // Synchronises the device and starts the clock; refused if one is already alive on this thread.
  OpProfiler();
  ~OpProfiler();
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;
  // Synchronises, closes the last span and returns one row per (op, direction), the largest
  // time first. The profiler stays alive but records nothing more.
  std::vector<OpTime> finish();

 private:
  friend void mark_op(const char* op, const char* pass);
  friend std::string current_span();
  friend class BackwardScope;
  friend class CopyScope;
  // Closes the current span (its time to its row) and opens (op, pass); `counted`: a call of it
  // (false when a span resumes after a copy inside it).
  void open(const std::string& op, const char* pass, bool counted = true);
  std::vector<OpTime> rows_;
  std::string op_;
  const char* pass_ = "-";
  int depth_ = 0;  // nested BackwardScopes (a backward's own ops are not separate spans)
  bool done_ = false;
  std::chrono::steady_clock::time_point t0_;
};

// An op's first kernel dispatch: closes the current span and opens `op`'s (no-op when no
// profiler is alive on this thread, or inside a backward). `pass`: "forward", or "step" for the
// optimizer's kernels.
void mark_op(const char* op, const char* pass = "forward");

// The span open now on this thread ("op/pass"), "" without a profiler: what a later boundary
// closes.
std::string current_span();

// A copy a view makes (contiguous, to(dtype), to(device)): its own span, after which the span
// it interrupted resumes (a copy inside an op's kernel is counted apart from the op, not as a
// second call of it).
class CopyScope {
 public:
  explicit CopyScope(const char* what);
  ~CopyScope();
  CopyScope(const CopyScope&) = delete;
  CopyScope& operator=(const CopyScope&) = delete;

 private:
  bool on_ = false;
  std::string op_;
  const char* pass_ = "-";
};

// One autograd node's backward.
class BackwardScope {
 public:
  explicit BackwardScope(const std::string& node);
  ~BackwardScope();
  BackwardScope(const BackwardScope&) = delete;
  BackwardScope& operator=(const BackwardScope&) = delete;

 private:
  bool on_ = false;
};

}  // namespace kimi::profile
