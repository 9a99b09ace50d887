// The math of `kimi-lab scaling` (the tech report's Figure 5, scaled down): the lower envelope
// of loss against training compute, the fit L(C) = a * C^-b + c (Kaplan et al. 2020; Hoffmann
// et al. 2022 use the same saturating form), the paper's two-parameter a * C^-b (DESIGN.md
// section 7), seeded percentile-bootstrap intervals, and the compute ratio of two fitted curves
// at equal loss. No I/O: trainer/scaling_report.* reads the runs and writes the files.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace kimi {

struct LossPoint {
  double compute = 0;  // training compute, in whatever unit the caller fits in (PFLOP/s-days)
  double loss = 0;     // final validation loss, nats per token
};

// The lower envelope as indices into `points`, by increasing compute: the points whose loss is
// below that of every point of smaller or equal compute (the Pareto frontier of less compute
// and less loss). Of points tied in compute only the lowest-loss one can be on it.
std::vector<size_t> lower_envelope(const std::vector<LossPoint>& points);

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// L(C) = a * C^-b + c; the two-parameter form has c = 0.
struct PowerLaw {
  double a = kNaN, b = kNaN, c = 0;
  double loss_at(double compute) const;
  // The compute at which the curve reaches `loss`: ((loss - c) / a)^(-1/b); NaN when the curve
  // never gets there (loss <= c, or a, b not positive).
  double compute_at(double loss) const;
};

struct PowerLawFit {
  PowerLaw law;
  double rms_log = kNaN;  // sqrt(mean (log L_i - log L(C_i))^2)
  bool ok = false;        // false: too few distinct computes, or non-positive values
};

// Least squares in log space, sum_i (log L_i - log(a C_i^-b + c))^2:
//  - fit_power_law (c = 0): closed form, ordinary least squares of log L on log C.
//  - fit_saturating_power_law: c profiled over [0, min L) -- for each c, a and b come in closed
//    form from the least-squares line of log(L - c) on log C, and the c with the smallest
//    log-space residual is found by a grid and a golden-section search -- then all three are
//    polished together by Levenberg-Marquardt on (log a, b, c) with c kept in [0, min L).
// Both need at least as many distinct computes as parameters (2, 3) and positive C and L.
PowerLawFit fit_power_law(const std::vector<LossPoint>& points);
PowerLawFit fit_saturating_power_law(const std::vector<LossPoint>& points);

struct Interval {
  double lo = kNaN, hi = kNaN;
};

// The `level` (e.g. 0.95) percentile interval of the finite values (linear interpolation between
// order statistics); NaN bounds when none is finite.
Interval percentile_interval(std::vector<double> values, double level);

// Bootstrap replicates of a fit: `n` resamples (with replacement, as many draws as points) of
// `points`, each refitted; replicate i uses the i-th resample of a generator seeded with `seed`,
// so the same seed gives the same replicates. A resample with fewer distinct computes than the
// form has parameters is redrawn (up to 100 times); a replicate whose fit fails has ok = false.
std::vector<PowerLawFit> bootstrap_fits(const std::vector<LossPoint>& points, bool saturating,
                                        int n, uint64_t seed);

// C_base(L) / C_other(L): how many times more compute `base` needs to reach the loss `other`
// reaches (the paper: MLA over Kimi Linear, ~1.16x). NaN where either curve never reaches L.
double compute_ratio_at_loss(const PowerLaw& base, const PowerLaw& other, double loss);

}  // namespace kimi
