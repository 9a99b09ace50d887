// Tests of the autograd engine (core/autograd/autograd.cpp): accumulation for shared inputs,
// diamond graphs, no-grad mode, errors for a second backward and for a non-scalar root without a
// gradient, explicit upstream gradients, release of saved tensors, broadcast reduction, views.
#include "core/autograd/autograd.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "core/ops/ops.h"

namespace {

using namespace kimi;

Tensor leaf(std::vector<double> v, Shape s) {
  Tensor t = Tensor::from_vector(v, s);
  t.set_requires_grad(true);
  return t;
}

void expect_near_vec(const Tensor& t, const std::vector<double>& want, double tol = 1e-12) {
  ASSERT_TRUE(t.defined());
  std::vector<double> got = t.to_vector<double>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

// The message of the kimi::Error that `f` throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Autograd, TensorUsedTwiceAccumulates) {
  Tensor x = leaf({1, -2, 3}, {3});
  sum(mul(x, x)).backward();  // d/dx sum(x*x) = 2x
  expect_near_vec(x.grad(), {2, -4, 6});
  x.zero_grad();
  sum(add(x, x)).backward();  // d/dx sum(x+x) = 2
  expect_near_vec(x.grad(), {2, 2, 2});
}

TEST(Autograd, GradAccumulatesAcrossBackwardCalls) {
  Tensor x = leaf({1, 2}, {2});
  sum(mul_scalar(x, 3)).backward();
  sum(mul_scalar(x, 3)).backward();
  expect_near_vec(x.grad(), {6, 6});
}

TEST(Autograd, DiamondGraph) {
  // a = exp(x); b = a * 2; c = a * a; y = sum(b + c);  dy/dx = (2 + 2a) * a
  Tensor x = leaf({0.5, -1.0}, {2});
  Tensor a = exp(x);
  Tensor y = sum(add(mul_scalar(a, 2), mul(a, a)));
  y.backward();
  std::vector<double> av = a.to_vector<double>();
  expect_near_vec(x.grad(), {(2 + 2 * av[0]) * av[0], (2 + 2 * av[1]) * av[1]});
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y;
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(grad_enabled());
    y = sum(mul(x, x));
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  EXPECT_TRUE(grad_enabled());
  std::string msg = error_of([&] { y.backward(); });
  EXPECT_NE(msg.find("does not require grad"), std::string::npos) << msg;
}

TEST(Autograd, SecondBackwardThroughSameGraphThrows) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = sum(mul(x, x));
  y.backward();
  std::string msg = error_of([&] { y.backward(); });
  EXPECT_NE(msg.find("second time"), std::string::npos) << msg;
  // Also when the root is fresh but an inner node was already used.
  Tensor z = exp(x);
  sum(z).backward();
  msg = error_of([&] { sum(mul_scalar(z, 2)).backward(); });
  EXPECT_NE(msg.find("second time"), std::string::npos) << msg;
  EXPECT_NE(msg.find("exp"), std::string::npos) << "the message should name the op: " << msg;
}

TEST(Autograd, NonScalarBackwardNeedsAGradient) {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor y = mul_scalar(x, 2);
  std::string msg = error_of([&] { y.backward(); });
  EXPECT_NE(msg.find("scalar"), std::string::npos) << msg;
  msg = error_of([&] { y.backward(Tensor::ones({2}, DType::kF64)); });
  EXPECT_NE(msg.find("gradient shape"), std::string::npos) << msg;
}

TEST(Autograd, BackwardWithUpstreamGradient) {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor y = mul(x, x);  // dy/dx = 2x, so dx = up * 2x
  y.backward(Tensor::from_vector(std::vector<double>{1, -1, 0.5}, {3}));
  expect_near_vec(x.grad(), {2, -4, 3});
}

TEST(Autograd, SavedTensorsReleasedAfterBackward) {
  Tensor x = leaf({1, 2, 3}, {3});
  std::weak_ptr<Storage> saved;
  Tensor y;
  {
    Tensor a = exp(x);  // a's storage is saved by exp (its output) and by mul (its inputs)
    saved = a.storage();
    y = sum(mul(a, a));
  }
  EXPECT_FALSE(saved.expired()) << "the graph must keep saved tensors alive until backward";
  y.backward();
  EXPECT_TRUE(saved.expired()) << "backward must free the tensors its nodes saved";
  EXPECT_TRUE(y.grad_fn()->released());
}

TEST(Autograd, BroadcastGradientsReduceToInputShape) {
  Tensor a = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = leaf({10, 20, 30}, {3});
  Tensor c = leaf({7, 8}, {2, 1});
  Tensor y = sum(mul(add(a, b), c));  // y = sum_ij (a_ij + b_j) c_i
  y.backward();
  ASSERT_EQ(b.grad().shape(), Shape({3}));
  ASSERT_EQ(c.grad().shape(), Shape({2, 1}));
  expect_near_vec(a.grad(), {7, 7, 7, 8, 8, 8});
  expect_near_vec(b.grad(), {15, 15, 15});
  expect_near_vec(c.grad(), {1 + 2 + 3 + 60, 4 + 5 + 6 + 60});
  Tensor s = leaf({2}, {});  // 0-d broadcast against [2, 3]
  sum(mul(a.detach(), s)).backward();
  expect_near_vec(s.grad(), {21});
}

TEST(Autograd, ViewsShareStorage) {
  Tensor x = Tensor::from_vector(std::vector<double>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor t = x.transpose(0, 1), n = x.narrow(1, 1, 2), r = x.reshape({3, 2}),
         e = x.expand({4, 2, 3});
  for (const Tensor& v : {t, n, r, e}) EXPECT_EQ(v.storage(), x.storage()) << v.str();
  EXPECT_FALSE(t.is_contiguous());
  x.data<double>()[1] = 42;
  EXPECT_EQ(t.to_vector<double>()[2], 42);
  EXPECT_EQ(n.to_vector<double>()[0], 42);
  EXPECT_EQ(e.to_vector<double>()[6 + 1], 42);
  std::vector<Tensor> pieces = split(x, {1, 2}, 1);
  EXPECT_EQ(pieces[1].storage(), x.storage());
}

TEST(Autograd, GradientThroughViewsOfALeaf) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = sum(mul(x.transpose(0, 1).narrow(0, 1, 2), Tensor::full({2, 2}, 3.0, DType::kF64)));
  y.backward();
  expect_near_vec(x.grad(), {0, 3, 3, 0, 3, 3});
}

TEST(Autograd, UnusedOutputOfMultiOutputOpGetsZeros) {
  Tensor x = leaf({1, 2, 3, 4}, {4});
  std::vector<Tensor> p = split(x, {1, 3}, 0);
  sum(mul_scalar(p[1], 2)).backward();
  expect_near_vec(x.grad(), {0, 2, 2, 2});
}

TEST(Autograd, MissingBackwardIsAnError) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = record("no_backward", Tensor::zeros({2}, DType::kF64), {x}, nullptr);
  std::string msg = error_of([&] { y.backward(Tensor::ones({2}, DType::kF64)); });
  EXPECT_NE(msg.find("no_backward"), std::string::npos) << msg;
}

}  // namespace

namespace {

// LeafGradReady: each leaf is announced once, with its final gradient, and a leaf only the
// last op uses is announced before one the first op uses (the order data-parallel buckets
// are summed in while the backward goes on).
TEST(Autograd, LeafReadyHookFiresOnceWithTheFinalGradientInBackwardOrder) {
  Tensor a = leaf({1, 2}, {2}), b = leaf({3, 4}, {2}), c = leaf({5, 6}, {2});
  Tensor unused = leaf({7, 8}, {2});
  Tensor h = mul(a, b);                       // a: used here first ...
  Tensor h2 = add(h, mul(a, c));              // ... and again deeper in the forward
  Tensor loss = sum(mul(h2, c), {0}, false);  // c: used last, so final only after mul(a, c)
  Tensor d = leaf({1, 1}, {2});
  Tensor total = add(loss, sum(mul(d, d), {0}, false));  // d: used by the last ops only
  std::vector<std::pair<const void*, std::vector<double>>> seen;
  run_backward({total}, {Tensor::ones(total.shape(), total.dtype())}, [&](const Tensor& t) {
    seen.push_back({t.impl().get(), t.grad().to_vector<double>()});
  });
  ASSERT_EQ(seen.size(), 4u);  // a, b, c, d; not `unused`
  for (const Tensor* t : {&a, &b, &c, &d}) {
    const auto it = std::find_if(seen.begin(), seen.end(),
                                 [&](const auto& s) { return s.first == t->impl().get(); });
    ASSERT_NE(it, seen.end());
    EXPECT_EQ(it->second, t->grad().to_vector<double>());  // final when announced
  }
  EXPECT_EQ(seen.front().first, d.impl().get());  // the last op's leaf, first
  EXPECT_FALSE(unused.grad().defined());
  // a's gradient: b + c (through h and mul(a, c)) times c: {3*5 + 5*5, 4*6 + 6*6}
  expect_near_vec(a.grad(), {40, 60});
}

}  // namespace
