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

  const auto* fwd = find(rows, "linear", "forward");
  ASSERT_NE(fwd, nullptr);
  EXPECT_EQ(fwd->calls, 2);
  const auto* bwd = find(rows, "linear", "backward");
  ASSERT_NE(bwd, nullptr);
  EXPECT_EQ(bwd->calls, 2);
  ASSERT_NE(find(rows, "sum", "forward"), nullptr);
  ASSERT_NE(find(rows, "sum", "backward"), nullptr);
  const auto* step = find(rows, "AdamW", "step");
  ASSERT_NE(step, nullptr);
  EXPECT_EQ(step->calls, 2);  // one per parameter
  // The linear backward's own products are part of its span, not "matmul" rows.
  EXPECT_EQ(find(rows, "matmul", "forward"), nullptr);
  EXPECT_EQ(find(rows, "matmul", "backward"), nullptr);
  const auto* outside = find(rows, "(outside ops)", "-");
  ASSERT_NE(outside, nullptr);
  EXPECT_EQ(outside->calls, 0);
  for (const auto& r : rows) EXPECT_GE(r.ms, 0.0) << r.op;
  EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end(),
                             [](const auto& a, const auto& b) { return a.ms > b.ms; }));
  // finish() a second time returns the same rows and records nothing more.
  Tensor more = linear(x, w1);
  const std::vector<profile::OpTime> again = prof.finish();
  EXPECT_EQ(again.size(), rows.size());
  EXPECT_EQ(find(again, "linear", "forward")->calls, 2);
}

TEST(OpProfile, ACopyInsideAnOpIsItsOwnSpanNotASecondCall) {
  // exp of a transposed view: the CPU kernel makes the input contiguous inside the op. The copy
  // is one "contiguous" call, and exp stays one call (its span resumes after the copy).
  Tensor x = Tensor::full({4, 3}, 0.5).transpose(0, 1);
  profile::OpProfiler prof;
  Tensor y = exp(x);
  const std::vector<profile::OpTime> rows = prof.finish();
  const auto* e = find(rows, "exp", "forward");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->calls, 1);
  const auto* c = find(rows, "contiguous", "forward");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->calls, 1);
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
  EXPECT_EQ(find(more, "outer", "forward")->calls, 1);
  EXPECT_EQ(profile::current_span(), "");
}

TEST(OpProfile, OffOutsideItsLifeAndOnePerThread) {
  Tensor x = Tensor::full({2, 2}, 1.0);
  Tensor before = sum(x);  // no profiler: nothing to record, nothing fails
  {
    profile::OpProfiler prof;
    EXPECT_THROW(profile::OpProfiler second, Error);
    Tensor y = sum(x);
    EXPECT_NE(find(prof.finish(), "sum", "forward"), nullptr);
  }
  profile::OpProfiler next;  // the first one is gone: a new one may start
  Tensor z = exp(x);
  EXPECT_NE(find(next.finish(), "exp", "forward"), nullptr);
}

}  // namespace
