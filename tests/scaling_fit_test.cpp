// The math of `kimi-lab scaling` (trainer/scaling_fit.h) on synthetic curves whose parameters
// are known: the fits recover them, the envelope is the hand-checked frontier, the bootstrap
// interval covers the truth and repeats with its seed, the compute ratio of shifted curves is
// the shift.
#include "trainer/scaling_fit.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace kimi {
namespace {

// n computes log-spaced over [lo, hi], losses from `law` times exp(noise * N(0, 1)).
std::vector<LossPoint> curve(const PowerLaw& law, int n, double lo, double hi, double noise,
                             uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 1);
  std::vector<LossPoint> out;
  for (int i = 0; i < n; ++i) {
    const double c = lo * std::pow(hi / lo, static_cast<double>(i) / (n - 1));
    out.push_back({c, law.loss_at(c) * std::exp(noise * z(rng))});
  }
  return out;
}

TEST(ScalingFit, SaturatingFitRecoversExactParameters) {
  const PowerLaw truth{2.0, 0.3, 1.5};
  const PowerLawFit f = fit_saturating_power_law(curve(truth, 12, 1e-5, 1.0, 0, 1));
  ASSERT_TRUE(f.ok);
  EXPECT_NEAR(f.law.a, 2.0, 1e-6);
  EXPECT_NEAR(f.law.b, 0.3, 1e-7);
  EXPECT_NEAR(f.law.c, 1.5, 1e-6);
  EXPECT_LT(f.rms_log, 1e-9);
}

TEST(ScalingFit, SaturatingFitRecoversParametersFromNoisyPoints) {
  const PowerLaw truth{2.0, 0.3, 1.5};
  const PowerLawFit f = fit_saturating_power_law(curve(truth, 25, 1e-5, 1.0, 0.005, 7));
  ASSERT_TRUE(f.ok);
  EXPECT_NEAR(f.law.a, 2.0, 0.1);
  EXPECT_NEAR(f.law.b, 0.3, 0.01);
  EXPECT_NEAR(f.law.c, 1.5, 0.1);
  EXPECT_GT(f.rms_log, 0.002);  // the noise is there, and the fit does not chase it
  EXPECT_LT(f.rms_log, 0.008);
}

TEST(ScalingFit, LevenbergMarquardtImprovesOnTheProfileStart) {
  // No c makes log(L - c) exactly linear here, so the closed-form profile alone is not the
  // least-squares answer; the polished fit must leave no larger residual than the pure power law
  // (c = 0 is inside the search) and reach the noise floor of a known curve.
  const PowerLaw truth{0.8, 0.12, 2.2};
  const auto pts = curve(truth, 10, 1e-6, 1e-1, 0.002, 3);
  const PowerLawFit three = fit_saturating_power_law(pts), two = fit_power_law(pts);
  ASSERT_TRUE(three.ok && two.ok);
  EXPECT_LE(three.rms_log, two.rms_log);
  EXPECT_LT(three.rms_log, 0.003);
}

TEST(ScalingFit, TwoParameterFitIsTheLogLogLine) {
  const PowerLaw paper_mla{2.3092, 0.0536, 0};  // DESIGN.md section 7
  const PowerLawFit f = fit_power_law(curve(paper_mla, 6, 1e-3, 1e2, 0, 1));
  ASSERT_TRUE(f.ok);
  EXPECT_NEAR(f.law.a, 2.3092, 1e-9);
  EXPECT_NEAR(f.law.b, 0.0536, 1e-11);
  EXPECT_EQ(f.law.c, 0);
}

TEST(ScalingFit, FitsRefuseTooFewDistinctComputesAndBadValues) {
  EXPECT_FALSE(fit_power_law({{1, 2}}).ok);
  EXPECT_FALSE(fit_power_law({{1, 2}, {1, 3}}).ok);
  EXPECT_TRUE(fit_power_law({{1, 3}, {2, 2}}).ok);
  EXPECT_FALSE(fit_saturating_power_law({{1, 3}, {2, 2}}).ok);
  EXPECT_FALSE(fit_saturating_power_law({{1, 3}, {2, 2}, {2, 1.9}}).ok);
  EXPECT_FALSE(fit_saturating_power_law({{1, 3}, {2, NAN}, {4, 1.9}}).ok);
  EXPECT_FALSE(fit_power_law({{0, 3}, {2, 2}}).ok);
}

TEST(ScalingFit, LowerEnvelopeOnAHandMadeSet) {
  // compute: 1 (loss 5), 2 (4 and 4.5), 3 (4.2: above 4), 4 (3), 4 again (3.5), 8 (3.1: above 3),
  // 16 (2). The frontier: 1, the 4 at 2, the 3 at 4, 16.
  const std::vector<LossPoint> pts = {{2, 4.5}, {4, 3.5}, {1, 5}, {3, 4.2},
                                      {4, 3},   {8, 3.1}, {2, 4}, {16, 2}};
  EXPECT_EQ(lower_envelope(pts), (std::vector<size_t>{2, 6, 4, 7}));
  EXPECT_TRUE(lower_envelope({}).empty());
}

TEST(ScalingFit, BootstrapIntervalCoversTheTruthAndRepeatsWithItsSeed) {
  const PowerLaw truth{2.0, 0.3, 1.5};
  const auto pts = curve(truth, 15, 1e-5, 1.0, 0.01, 11);
  const auto reps = bootstrap_fits(pts, /*saturating=*/true, 200, 42);
  ASSERT_EQ(reps.size(), 200u);
  std::vector<double> a, b, c;
  int ok = 0;
  for (const auto& r : reps) {
    ok += r.ok;
    a.push_back(r.ok ? r.law.a : kNaN);
    b.push_back(r.ok ? r.law.b : kNaN);
    c.push_back(r.ok ? r.law.c : kNaN);
  }
  EXPECT_GT(ok, 190);
  const Interval ia = percentile_interval(a, 0.95), ib = percentile_interval(b, 0.95),
                 ic = percentile_interval(c, 0.95);
  EXPECT_TRUE(ia.lo < 2.0 && 2.0 < ia.hi) << ia.lo << " " << ia.hi;
  EXPECT_TRUE(ib.lo < 0.3 && 0.3 < ib.hi) << ib.lo << " " << ib.hi;
  EXPECT_TRUE(ic.lo < 1.5 && 1.5 < ic.hi) << ic.lo << " " << ic.hi;
  EXPECT_LT(ib.hi - ib.lo, 0.1);  // informative, not the whole line

  const auto again = bootstrap_fits(pts, true, 200, 42);
  const auto other = bootstrap_fits(pts, true, 200, 43);
  int same = 0, differ = 0;
  for (size_t i = 0; i < reps.size(); ++i) {
    same += reps[i].law.b == again[i].law.b;
    differ += reps[i].law.b != other[i].law.b;
  }
  EXPECT_EQ(same, 200);
  EXPECT_GT(differ, 150);
}

TEST(ScalingFit, PercentileIntervalInterpolatesAndSkipsNaN) {
  const Interval i = percentile_interval({4, 1, NAN, 3, 2, 5}, 0.5);  // 1..5: quartiles 2 and 4
  EXPECT_DOUBLE_EQ(i.lo, 2);
  EXPECT_DOUBLE_EQ(i.hi, 4);
  EXPECT_TRUE(std::isnan(percentile_interval({NAN}, 0.9).lo));
}

TEST(ScalingFit, ComputeRatioOfCurvesShiftedInComputeIsTheShift) {
  // other(C) = base(k C): `other` reaches every loss with k times less compute.
  const double k = 1.16;
  const PowerLaw base{2.0, 0.25, 1.2};
  const PowerLaw other{2.0 * std::pow(k, -0.25), 0.25, 1.2};
  for (double loss : {1.5, 2.0, 4.0})
    EXPECT_NEAR(compute_ratio_at_loss(base, other, loss), k, 1e-12);
  EXPECT_NEAR(other.loss_at(1e-3), base.loss_at(k * 1e-3), 1e-12);
  EXPECT_TRUE(std::isnan(compute_ratio_at_loss(base, other, 1.1)));  // below c: never reached
  // Different exponents: the ratio moves with the loss, by the closed form.
  const PowerLaw steeper{2.0, 0.3, 1.2};
  const double loss = 2.0;
  EXPECT_NEAR(compute_ratio_at_loss(base, steeper, loss),
              std::pow(0.8 / 2.0, -1 / 0.25) / std::pow(0.8 / 2.0, -1 / 0.3), 1e-9);
}

}  // namespace
}  // namespace kimi
