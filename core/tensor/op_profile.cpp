#include "core/tensor/op_profile.h"

#include <algorithm>

#include "core/tensor/device_memory.h"
#include "core/tensor/error.h"

namespace kimi::profile {
namespace {

constexpr const char* kOutside = "(outside ops)";
thread_local OpProfiler* t_active = nullptr;

}  // namespace

OpProfiler::OpProfiler() {
  KIMI_CHECK(t_active == nullptr, "op profiler: one is already running on this thread");
  device_synchronize();
  t_active = this;
  op_ = kOutside;
  pass_ = "-";
  t0_ = std::chrono::steady_clock::now();
}

OpProfiler::~OpProfiler() {
  if (t_active == this) t_active = nullptr;
}

void OpProfiler::open(const std::string& op, const char* pass) {
  device_synchronize();
  const auto now = std::chrono::steady_clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - t0_).count();
  auto row = std::find_if(rows_.begin(), rows_.end(),
                          [&](const OpTime& r) { return r.op == op_ && r.pass == pass_; });
  if (row == rows_.end()) row = rows_.insert(rows_.end(), OpTime{op_, pass_, 0, 0});
  row->calls += 1;
  row->ms += ms;
  op_ = op;
  pass_ = pass;
  t0_ = now;
}

std::vector<OpTime> OpProfiler::finish() {
  if (!done_) {
    open(kOutside, "-");
    done_ = true;
    if (t_active == this) t_active = nullptr;
    // The calls of "(outside ops)" count the gaps between ops, not calls: one row, no count.
    for (OpTime& r : rows_)
      if (r.op == kOutside) r.calls = 0;
    std::stable_sort(rows_.begin(), rows_.end(),
                     [](const OpTime& a, const OpTime& b) { return a.ms > b.ms; });
  }
  return rows_;
}

void mark_op(const char* op, const char* pass) {
  OpProfiler* p = t_active;
  if (p == nullptr || p->depth_ > 0) return;
  p->open(op, pass);
}

BackwardScope::BackwardScope(const std::string& node) {
  OpProfiler* p = t_active;
  if (p == nullptr) return;
  on_ = true;
  if (p->depth_++ == 0) p->open(node, "backward");
}

BackwardScope::~BackwardScope() {
  OpProfiler* p = t_active;
  if (!on_ || p == nullptr) return;
  if (--p->depth_ == 0) p->open(kOutside, "-");
}

}  // namespace kimi::profile
