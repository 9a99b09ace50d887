// The CPU unary kernels' SIMD path (core/cpu/elementwise.h: exp, sigmoid, silu, softplus, tanh on
// Eigen's vectorised functions over blocks) against the scalar formulas it replaced, forward and
// backward, float and double, over a length with several OpenMP blocks and a tail, on values
// from deep in both tails (where e^-x overflows) through zero.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu/elementwise.h"

namespace {

using namespace kimi;

template <class T>
void check_kind(UnaryKind k, double rel) {
  const int64_t n = 5 * cpu::kSimdBlock + 37;
  std::vector<T> x(n), dy(n), y(n), dx(n);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<T>(-80.0 + 160.0 * static_cast<double>(i) / static_cast<double>(n - 1));
    dy[i] = static_cast<T>(0.5 + 0.25 * std::sin(static_cast<double>(i)));
  }
  cpu::unary_fwd<T>(k, n, x.data(), y.data(), 0.0);
  cpu::unary_bwd<T>(k, n, x.data(), y.data(), dy.data(), dx.data(), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const T want = cpu::unary_value(k, x[i], 0.0);
    const T dwant = dy[i] * cpu::unary_derivative(k, x[i], want, 0.0);
    // Relative where the value is a normal number; where the scalar formula gives a value below
    // the smallest normal (sigmoid / silu deep in the negative tail), the SIMD one may flush it.
    const double tiny = std::numeric_limits<T>::min() * 4;
    EXPECT_NEAR(y[i], want, rel * std::abs(want) + tiny) << "forward, x = " << x[i];
    // f' of silu crosses zero near x = -1.28: there the error is relative to dy's scale.
    EXPECT_NEAR(dx[i], dwant, rel * (std::abs(dwant) + std::abs(dy[i])) + tiny)
        << "backward, x = " << x[i];
    if (::testing::Test::HasFailure()) return;  // one message, not thousands
  }
}

TEST(CpuUnarySimd, MatchesTheScalarFormulas) {
  for (UnaryKind k : {UnaryKind::kExp, UnaryKind::kSigmoid, UnaryKind::kSilu, UnaryKind::kSoftplus,
                      UnaryKind::kTanh}) {
    SCOPED_TRACE(static_cast<int>(k));
    check_kind<float>(k, 4e-6);
    check_kind<double>(k, 1e-13);
  }
}

TEST(CpuUnarySimd, LimitsAndNaN) {
  const std::vector<float> x = {-INFINITY, -1e30f, 1e30f, INFINITY, NAN, 0.0f, -0.0f};
  std::vector<float> y(x.size());
  cpu::unary_fwd<float>(UnaryKind::kSigmoid, static_cast<int64_t>(x.size()), x.data(), y.data(), 0);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 1.0f);
  EXPECT_EQ(y[3], 1.0f);
  EXPECT_TRUE(std::isnan(y[4]));
  EXPECT_EQ(y[5], 0.5f);
  cpu::unary_fwd<float>(UnaryKind::kSoftplus, static_cast<int64_t>(x.size()), x.data(), y.data(),
                        0);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[2], 1e30f);  // linear above 20, as PyTorch's
  EXPECT_EQ(y[3], INFINITY);
  EXPECT_TRUE(std::isnan(y[4]));
  EXPECT_NEAR(y[5], std::log(2.0f), 1e-7);
}

}  // namespace
