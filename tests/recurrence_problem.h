// Inputs of one delta-rule / gated-linear-recurrence call, shared by the CPU kernel tests and
// the CUDA parity tests and benchmark: empty vectors stand for nullptr (no gate, zero h0 / dht,
// no beta), and random_problem() draws k L2-normalised per head (as the layers do), g <= 0 and
// beta in (0, 1). The same seed gives the same numbers in every test binary.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/cpu/delta_rule.h"

namespace kimi::test {

template <class T>
struct RecurrenceProblem {
  RecurrenceDims d;
  bool delta = true;  // false: the gated linear recurrence (no beta)
  std::vector<T> q, k, v, g, beta, h0, do_, dht;

  template <class U>
  RecurrenceProblem<U> cast() const {
    auto c = [](const std::vector<T>& x) { return std::vector<U>(x.begin(), x.end()); };
    return RecurrenceProblem<U>{d, delta, c(q), c(k), c(v), c(g), c(beta), c(h0), c(do_), c(dht)};
  }
};

inline RecurrenceProblem<double> random_problem(const RecurrenceDims& d, bool delta, uint64_t seed,
                                                double max_decay = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01;
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  auto normal = [&](int64_t n, double s) {
    std::vector<double> x(n);
    for (auto& e : x) e = s * n01(rng);
    return x;
  };
  const int64_t BTH = d.B * d.T * d.H;
  RecurrenceProblem<double> p;
  p.d = d;
  p.delta = delta;
  p.q = normal(BTH * d.K, 1.0);
  p.k = normal(BTH * d.K, 1.0);
  for (int64_t r = 0; r < BTH; ++r) {
    double s = 0;
    for (int64_t i = 0; i < d.K; ++i) s += p.k[r * d.K + i] * p.k[r * d.K + i];
    for (int64_t i = 0; i < d.K; ++i) p.k[r * d.K + i] /= std::sqrt(s);
  }
  p.v = normal(BTH * d.V, 1.0);
  if (d.gate != GateKind::kNone) {
    p.g.resize(d.gate == GateKind::kPerChannel ? BTH * d.K : BTH);
    for (auto& e : p.g) e = -max_decay * u01(rng);
  }
  if (delta) {
    p.beta.resize(BTH);
    for (auto& e : p.beta) e = 0.05 + 0.9 * u01(rng);
  }
  p.h0 = normal(d.B * d.H * d.K * d.V, 0.5);
  p.do_ = normal(BTH * d.V, 1.0);
  p.dht = normal(d.B * d.H * d.K * d.V, 1.0);
  return p;
}

}  // namespace kimi::test
