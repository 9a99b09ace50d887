// Envelope, power-law fits, bootstrap and compute ratios (trainer/scaling_fit.h). The fits
// minimise residuals of log L, not of L: the losses of a scaling grid span a small range while
// the computes span decades, and the paper's own fits are straight lines on a log-log plot.
#include "trainer/scaling_fit.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

namespace kimi {
namespace {

size_t distinct_computes(const std::vector<LossPoint>& points) {
  std::set<double> c;
  for (const auto& p : points) c.insert(p.compute);
  return c.size();
}

bool all_positive_finite(const std::vector<LossPoint>& points) {
  return std::all_of(points.begin(), points.end(), [](const LossPoint& p) {
    return std::isfinite(p.compute) && std::isfinite(p.loss) && p.compute > 0 && p.loss > 0;
  });
}

double min_loss(const std::vector<LossPoint>& points) {
  double m = points.front().loss;
  for (const auto& p : points) m = std::min(m, p.loss);
  return m;
}

// sum_i (log L_i - log(a C_i^-b + c))^2; +inf where the model is not positive.
double log_sse(const std::vector<LossPoint>& points, const PowerLaw& f) {
  double sse = 0;
  for (const auto& p : points) {
    const double m = f.loss_at(p.compute);
    if (!(m > 0)) return INFINITY;
    const double r = std::log(p.loss) - std::log(m);
    sse += r * r;
  }
  return sse;
}

// The least-squares line y = i + s x of log(L - c) on log C, as a = e^i, b = -s.
PowerLaw log_linear(const std::vector<LossPoint>& points, double c) {
  const double n = static_cast<double>(points.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& p : points) {
    const double x = std::log(p.compute), y = std::log(p.loss - c);
    sx += x, sy += y, sxx += x * x, sxy += x * y;
  }
  const double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  PowerLaw f;
  f.a = std::exp((sy - slope * sx) / n);
  f.b = -slope;
  f.c = c;
  return f;
}

PowerLawFit finish(const std::vector<LossPoint>& points, const PowerLaw& f) {
  PowerLawFit out;
  out.law = f;
  const double sse = log_sse(points, f);
  out.ok = std::isfinite(sse) && std::isfinite(f.a) && std::isfinite(f.b) && std::isfinite(f.c);
  out.rms_log = out.ok ? std::sqrt(sse / static_cast<double>(points.size())) : kNaN;
  return out;
}

// Profile over c in [0, c_max): the c whose closed-form (a, b) leaves the least log residual.
PowerLaw profile_fit(const std::vector<LossPoint>& points, double c_max) {
  auto cost = [&](double c) { return log_sse(points, log_linear(points, c)); };
  constexpr int kGrid = 400;
  const double hi = c_max * (1 - 1e-9);
  int best = 0;
  double best_cost = INFINITY;
  for (int k = 0; k <= kGrid; ++k) {
    const double v = cost(hi * k / kGrid);
    if (v < best_cost) best_cost = v, best = k;
  }
  // Golden-section search between the neighbours of the best grid point.
  double lo = hi * std::max(0, best - 1) / kGrid, up = hi * std::min(kGrid, best + 1) / kGrid;
  const double g = (std::sqrt(5.0) - 1) / 2;
  double x1 = up - g * (up - lo), x2 = lo + g * (up - lo);
  double f1 = cost(x1), f2 = cost(x2);
  for (int it = 0; it < 100 && up - lo > 1e-14 * std::max(1.0, c_max); ++it) {
    if (f1 < f2) {
      up = x2, x2 = x1, f2 = f1;
      x1 = up - g * (up - lo), f1 = cost(x1);
    } else {
      lo = x1, x1 = x2, f1 = f2;
      x2 = lo + g * (up - lo), f2 = cost(x2);
    }
  }
  const double c = std::min(f1, f2) < best_cost ? (f1 < f2 ? x1 : x2) : hi * best / kGrid;
  return log_linear(points, c);
}

// Solves the 3x3 system A x = v by Gaussian elimination with partial pivoting; false if singular.
bool solve3(std::array<std::array<double, 3>, 3> A, std::array<double, 3> v,
            std::array<double, 3>& x) {
  for (int col = 0; col < 3; ++col) {
    int piv = col;
    for (int r = col + 1; r < 3; ++r)
      if (std::abs(A[r][col]) > std::abs(A[piv][col])) piv = r;
    if (!(std::abs(A[piv][col]) > 1e-300)) return false;
    std::swap(A[piv], A[col]);
    std::swap(v[piv], v[col]);
    for (int r = col + 1; r < 3; ++r) {
      const double m = A[r][col] / A[col][col];
      for (int k = col; k < 3; ++k) A[r][k] -= m * A[col][k];
      v[r] -= m * v[col];
    }
  }
  for (int r = 2; r >= 0; --r) {
    double s = v[r];
    for (int k = r + 1; k < 3; ++k) s -= A[r][k] * x[k];
    x[r] = s / A[r][r];
  }
  return true;
}

// Levenberg-Marquardt on p = (log a, b, c), residual r_i = log L_i - log(a C_i^-b + c), with
// dr/dlog a = -a C^-b / m, dr/db = a C^-b log C / m, dr/dc = -1 / m (m = the model's loss).
PowerLaw polish(const std::vector<LossPoint>& points, PowerLaw f, double c_max) {
  double cost = log_sse(points, f), lambda = 1e-3;
  for (int it = 0; it < 200 && std::isfinite(cost); ++it) {
    std::array<std::array<double, 3>, 3> jtj{};
    std::array<double, 3> jtr{};
    for (const auto& p : points) {
      const double pw = f.a * std::pow(p.compute, -f.b), m = pw + f.c;
      const std::array<double, 3> j = {-pw / m, pw * std::log(p.compute) / m, -1 / m};
      const double r = std::log(p.loss) - std::log(m);
      for (int u = 0; u < 3; ++u) {
        jtr[u] += j[u] * r;
        for (int v = 0; v < 3; ++v) jtj[u][v] += j[u] * j[v];
      }
    }
    bool improved = false;
    while (lambda < 1e12 && !improved) {
      auto A = jtj;
      std::array<double, 3> rhs, step{};
      for (int u = 0; u < 3; ++u) A[u][u] += lambda * std::max(jtj[u][u], 1e-300), rhs[u] = -jtr[u];
      if (solve3(A, rhs, step)) {
        PowerLaw g{f.a * std::exp(step[0]), f.b + step[1], f.c + step[2]};
        if (g.c >= 0 && g.c < c_max) {
          const double c2 = log_sse(points, g);
          if (c2 < cost) {
            const bool converged = cost - c2 <= 1e-15 * std::max(cost, 1e-300);
            f = g, cost = c2, improved = true, lambda = std::max(lambda / 3, 1e-12);
            if (converged) return f;
            continue;
          }
        }
      }
      lambda *= 4;
    }
    if (!improved) break;
  }
  return f;
}

}  // namespace

std::vector<size_t> lower_envelope(const std::vector<LossPoint>& points) {
  std::vector<size_t> order(points.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) {
    if (points[i].compute != points[j].compute) return points[i].compute < points[j].compute;
    return points[i].loss < points[j].loss;
  });
  std::vector<size_t> out;
  double best = INFINITY;
  for (size_t i : order)
    if (points[i].loss < best) best = points[i].loss, out.push_back(i);
  return out;
}

double PowerLaw::loss_at(double compute) const { return a * std::pow(compute, -b) + c; }

double PowerLaw::compute_at(double loss) const {
  if (!(a > 0) || !(b > 0) || !(loss > c)) return kNaN;
  return std::pow((loss - c) / a, -1 / b);
}

PowerLawFit fit_power_law(const std::vector<LossPoint>& points) {
  if (points.size() < 2 || !all_positive_finite(points) || distinct_computes(points) < 2) return {};
  return finish(points, log_linear(points, 0));
}

PowerLawFit fit_saturating_power_law(const std::vector<LossPoint>& points) {
  if (points.size() < 3 || !all_positive_finite(points) || distinct_computes(points) < 3) return {};
  const double c_max = min_loss(points);
  return finish(points, polish(points, profile_fit(points, c_max), c_max));
}

Interval percentile_interval(std::vector<double> values, double level) {
  values.erase(
      std::remove_if(values.begin(), values.end(), [](double v) { return !std::isfinite(v); }),
      values.end());
  if (values.empty()) return {};
  std::sort(values.begin(), values.end());
  auto quantile = [&](double q) {
    const double pos = q * static_cast<double>(values.size() - 1);
    const size_t i = static_cast<size_t>(std::floor(pos));
    const size_t j = std::min(i + 1, values.size() - 1);
    return values[i] + (pos - static_cast<double>(i)) * (values[j] - values[i]);
  };
  const double tail = (1 - level) / 2;
  return {quantile(tail), quantile(1 - tail)};
}

std::vector<PowerLawFit> bootstrap_fits(const std::vector<LossPoint>& points, bool saturating,
                                        int n, uint64_t seed) {
  std::vector<PowerLawFit> out;
  if (points.empty()) return out;
  const size_t params = saturating ? 3 : 2;
  // mt19937_64's output sequence is fixed by the standard, and the index is taken by a plain
  // modulo (not std::uniform_int_distribution, whose mapping differs between libraries).
  std::mt19937_64 rng(seed);
  std::vector<LossPoint> sample(points.size());
  for (int r = 0; r < n; ++r) {
    bool usable = false;
    for (int attempt = 0; attempt < 100 && !usable; ++attempt) {
      for (auto& s : sample) s = points[rng() % points.size()];
      usable = distinct_computes(sample) >= params;
    }
    out.push_back(!usable      ? PowerLawFit{}
                  : saturating ? fit_saturating_power_law(sample)
                               : fit_power_law(sample));
  }
  return out;
}

double compute_ratio_at_loss(const PowerLaw& base, const PowerLaw& other, double loss) {
  return base.compute_at(loss) / other.compute_at(loss);
}

}  // namespace kimi
