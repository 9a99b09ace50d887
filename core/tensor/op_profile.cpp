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

namespace {
OpTime& row_of(std::vector<OpTime>& rows, const std::string& op, const char* pass) {
  auto row = std::find_if(rows.begin(), rows.end(),
                          [&](const OpTime& r) { return r.op == op && r.pass == pass; });
  if (row == rows.end()) row = rows.insert(rows.end(), OpTime{op, pass, 0, 0});
  return *row;
}
}  // namespace

void OpProfiler::open(const std::string& op, const char* pass, bool counted) {
  device_synchronize();
  const auto now = std::chrono::steady_clock::now();
  row_of(rows_, op_, pass_).ms += std::chrono::duration<double, std::milli>(now - t0_).count();
  if (counted) row_of(rows_, op, pass).calls += 1;
  op_ = op;
  pass_ = pass;
  t0_ = now;
}

std::vector<OpTime> OpProfiler::finish() {
  if (!done_) {
    open(kOutside, "-");
    done_ = true;
    if (t_active == this) t_active = nullptr;
    // The calls of "(outside ops)" would count the gaps between ops, not calls: no count.
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

std::string current_span() {
  const OpProfiler* p = t_active;
  return p == nullptr ? std::string() : p->op_ + "/" + p->pass_;
}

CopyScope::CopyScope(const char* what) {
  OpProfiler* p = t_active;
  if (p == nullptr || p->depth_ > 0) return;
  on_ = true;
  op_ = p->op_;
  pass_ = p->pass_;
  p->open(what, "forward");
}

CopyScope::~CopyScope() {
  OpProfiler* p = t_active;
  if (on_ && p != nullptr && p->depth_ == 0) p->open(op_, pass_, /*counted=*/false);
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
