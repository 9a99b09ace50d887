// The op profiler (core/tensor/op_profile.h): which spans a forward + backward + optimizer step
// gives (each op's forward, each node's backward with the ops it runs inside counted as its own,
// the optimizer's kernels as "step"), the counts, and that it is off outside its life.
#include "core/tensor/op_profile.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "core/ops/ops.h"
#include "core/optim/optimizer.h"
#include "core/tensor/error.h"

namespace {

using namespace kimi;

const profile::OpTime* find(const std::vector<profile::OpTime>& rows, const std::string& op,
                            const std::string& pass) {
  for (const auto& r : rows)
    if (r.op == op && r.pass == pass) return &r;
  return nullptr;
}

// The calls of a row, -1 when there is no such row.
int64_t calls(const std::vector<profile::OpTime>& rows, const std::string& op,
              const std::string& pass) {
  const profile::OpTime* r = find(rows, op, pass);
  return r == nullptr ? -1 : r->calls;
}

Tensor param(Shape s, double v) {
  Tensor t = Tensor::full(s, v);
  t.set_requires_grad(true);
  return t;
}

TEST(OpProfile, SpansOfAForwardBackwardAndStep) {
  Tensor w1 = param({8, 4}, 0.1), w2 = param({8, 8}, 0.2);
  Tensor x = Tensor::full({3, 4}, 1.0);
  optim::AdamW opt({{"w1", w1}, {"w2", w2}}, optim::AdamWOptions{});
  profile::OpProfiler prof;
  Tensor h = linear(linear(x, w1), w2);  // two linear calls
  Tensor loss = sum(h);
  loss.backward();
  opt.step(1e-3);
  const std::vector<profile::OpTime> rows = prof.finish();

  EXPECT_EQ(calls(rows, "linear", "forward"), 2);
  EXPECT_EQ(calls(rows, "linear", "backward"), 2);
  EXPECT_EQ(calls(rows, "sum", "forward"), 1);
  EXPECT_EQ(calls(rows, "sum", "backward"), 1);
  EXPECT_EQ(calls(rows, "AdamW", "step"), 2);  // one per parameter
  // The linear backward's own products are part of its span, not "matmul" rows.
  EXPECT_EQ(calls(rows, "matmul", "forward"), -1);
  EXPECT_EQ(calls(rows, "matmul", "backward"), -1);
  EXPECT_EQ(calls(rows, "(outside ops)", "-"), 0);  // there, but gaps are not calls
  for (const auto& r : rows) EXPECT_GE(r.ms, 0.0) << r.op;
  EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end(),
                             [](const auto& a, const auto& b) { return a.ms > b.ms; }));
  // finish() a second time returns the same rows and records nothing more.
  Tensor more = linear(x, w1);
  const std::vector<profile::OpTime> again = prof.finish();
  EXPECT_EQ(again.size(), rows.size());
  EXPECT_EQ(calls(again, "linear", "forward"), 2);
}

TEST(OpProfile, ACopyInsideAnOpIsItsOwnSpanNotASecondCall) {
  // exp of a transposed view: the CPU kernel makes the input contiguous inside the op. The copy
  // is one "contiguous" call, and exp stays one call (its span resumes after the copy).
  Tensor x = Tensor::full({4, 3}, 0.5).transpose(0, 1);
  profile::OpProfiler prof;
  Tensor y = exp(x);
  const std::vector<profile::OpTime> rows = prof.finish();
  EXPECT_EQ(calls(rows, "exp", "forward"), 1);
  EXPECT_EQ(calls(rows, "contiguous", "forward"), 1);
  // The span after a copy is the one it interrupted; inside a backward a copy is no span.
  profile::OpProfiler again;
  profile::mark_op("outer");
  {
    const profile::CopyScope copy("contiguous");
    EXPECT_EQ(profile::current_span(), "contiguous/forward");
  }
  EXPECT_EQ(profile::current_span(), "outer/forward");
  {
    const profile::BackwardScope node("linear");
    const profile::CopyScope copy("contiguous");
    EXPECT_EQ(profile::current_span(), "linear/backward");
  }
  EXPECT_EQ(profile::current_span(), "(outside ops)/-");
  const std::vector<profile::OpTime> more = again.finish();
  EXPECT_EQ(calls(more, "outer", "forward"), 1);
  EXPECT_EQ(profile::current_span(), "");
}

TEST(OpProfile, OffOutsideItsLifeAndOnePerThread) {
  Tensor x = Tensor::full({2, 2}, 1.0);
  Tensor before = sum(x);  // no profiler: nothing to record, nothing fails
  {
    profile::OpProfiler prof;
    EXPECT_THROW(profile::OpProfiler second, Error);
    Tensor y = sum(x);
    EXPECT_EQ(calls(prof.finish(), "sum", "forward"), 1);
  }
  profile::OpProfiler next;  // the first one is gone: a new one may start
  Tensor z = exp(x);
  EXPECT_EQ(calls(next.finish(), "exp", "forward"), 1);
}

}  // namespace
