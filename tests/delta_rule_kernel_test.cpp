// Tests of the delta-rule / linear-recurrence CPU kernels (core/cpu/delta_rule.h):
// golden tensors from flash-linear-attention (tests/golden/linear_ops_small.safetensors),
// chunkwise against recurrent on odd sizes (FLA's get_err_ratio style), and central finite
// differences in float64 for every input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/delta_rule.h"
#include "tests/golden.h"
#include "tests/recurrence_problem.h"

namespace {

using kimi::GateKind;
using kimi::RecurrenceDims;
using kimi::test::rel_err;

enum class Form { kRecurrent, kChunk };

template <class T>
const T* ptr(const std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}

// Inputs of one call (tests/recurrence_problem.h).
template <class T>
using Problem = kimi::test::RecurrenceProblem<T>;
using kimi::test::random_problem;

template <class T>
struct Result {
  std::vector<T> o, ht, dq, dk, dv, dg, dbeta, dh0;
};

template <class T>
Result<T> run(const Problem<T>& p, Form form, bool backward = true) {
  using namespace kimi::cpu;
  const RecurrenceDims& d = p.d;
  const int64_t BTH = d.B * d.T * d.H;
  Result<T> r;
  r.o.assign(BTH * d.V, T(0));
  r.ht.assign(d.B * d.H * d.K * d.V, T(0));
  r.dq.assign(BTH * d.K, T(0));
  r.dk.assign(BTH * d.K, T(0));
  r.dv.assign(BTH * d.V, T(0));
  r.dg.assign(p.g.size(), T(0));
  r.dbeta.assign(p.delta ? BTH : 0, T(0));
  r.dh0.assign(d.B * d.H * d.K * d.V, T(0));
  const T *q = ptr(p.q), *k = ptr(p.k), *v = ptr(p.v), *g = ptr(p.g), *b = ptr(p.beta),
          *h0 = ptr(p.h0), *dO = ptr(p.do_), *dht = ptr(p.dht);
  T* dg = r.dg.empty() ? nullptr : r.dg.data();
  const bool rec = form == Form::kRecurrent;
  if (p.delta) {
    (rec ? delta_rule_recurrent_fwd<T> : delta_rule_chunk_fwd<T>)(d, q, k, v, g, b, h0, r.o.data(),
                                                                  r.ht.data());
    if (!backward) return r;
    (rec ? delta_rule_recurrent_bwd<T>
         : delta_rule_chunk_bwd<T>)(d, q, k, v, g, b, h0, dO, dht, r.dq.data(), r.dk.data(),
                                    r.dv.data(), dg, r.dbeta.data(), r.dh0.data());
  } else {
    (rec ? linear_recurrence_recurrent_fwd<T>
         : linear_recurrence_chunk_fwd<T>)(d, q, k, v, g, h0, r.o.data(), r.ht.data());
    if (!backward) return r;
    (rec ? linear_recurrence_recurrent_bwd<T>
         : linear_recurrence_chunk_bwd<T>)(d, q, k, v, g, h0, dO, dht, r.dq.data(), r.dk.data(),
                                           r.dv.data(), dg, r.dh0.data());
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Golden: FLA's naive references (float32), B=2 T=100 H=2 K=32 V=48.

constexpr const char* kLinearOps = "linear_ops_small.safetensors";

Problem<double> load_golden(const kimi::test::GoldenFile& f, const std::string& pre, GateKind gate,
                            bool delta) {
  Problem<double> p;
  p.d = RecurrenceDims{2, 100, 2, 32, 48, gate, 1.0 / std::sqrt(32.0), 64};
  p.delta = delta;
  auto get = [&](const char* n) { return f.get(pre + n).data; };
  p.q = get("q"), p.k = get("k"), p.v = get("v"), p.h0 = get("h0");
  p.do_ = get("do"), p.dht = get("dht");
  if (gate != GateKind::kNone) p.g = get("g");
  if (delta) p.beta = get("beta");
  return p;
}

template <class T>
void check_golden(const kimi::test::GoldenFile& f, const std::string& pre, const Problem<T>& p,
                  Form form, const char* label) {
  const Result<T> r = run(p, form);
  std::vector<std::pair<const char*, const std::vector<T>*>> outs = {
      {"o", &r.o}, {"ht", &r.ht}, {"dq", &r.dq}, {"dk", &r.dk}, {"dv", &r.dv}, {"dh0", &r.dh0}};
  if (!p.g.empty()) outs.push_back({"dg", &r.dg});
  if (p.delta) outs.push_back({"dbeta", &r.dbeta});
  std::string line = pre + " " + label + ":";
  for (auto& [name, x] : outs) {
    const double err = rel_err(*x, f.get(pre + name).data);
    const bool grad = name[0] == 'd';
    EXPECT_LT(err, grad ? 1e-4 : 1e-5) << pre << name << " (" << label << ")";
    char buf[64];
    std::snprintf(buf, sizeof buf, " %s %.1e", name, err);
    line += buf;
  }
  std::printf("[golden] %s\n", line.c_str());
}

void golden_case(const std::string& pre, GateKind gate, bool delta) {
  const kimi::test::GoldenFile f(kLinearOps);
  Problem<double> p = load_golden(f, pre, gate, delta);
  const Problem<float> pf = p.cast<float>();
  check_golden(f, pre, p, Form::kRecurrent, "recurrent f64");
  check_golden(f, pre, pf, Form::kRecurrent, "recurrent f32");
  check_golden(f, pre, p, Form::kChunk, "chunk64 f64");
  check_golden(f, pre, pf, Form::kChunk, "chunk64 f32");
  Problem<float> pf16 = pf;
  pf16.d.chunk = 16;
  check_golden(f, pre, pf16, Form::kChunk, "chunk16 f32");
}

TEST(DeltaRuleKernelGolden, Kda) {
  KIMI_SKIP_WITHOUT_GOLDEN(kLinearOps);
  golden_case("kda.", GateKind::kPerChannel, true);
}
TEST(DeltaRuleKernelGolden, Gdn) {
  KIMI_SKIP_WITHOUT_GOLDEN(kLinearOps);
  golden_case("gdn.", GateKind::kScalar, true);
}
TEST(DeltaRuleKernelGolden, DeltaNet) {
  KIMI_SKIP_WITHOUT_GOLDEN(kLinearOps);
  golden_case("deltanet.", GateKind::kNone, true);
}
TEST(DeltaRuleKernelGolden, SimpleGla) {
  KIMI_SKIP_WITHOUT_GOLDEN(kLinearOps);
  golden_case("simple_gla.", GateKind::kScalar, false);
}

// ---------------------------------------------------------------------------------------------
// Random problems: random_problem() (tests/recurrence_problem.h).

const char* gate_name(GateKind g) {
  return g == GateKind::kNone ? "none" : g == GateKind::kScalar ? "scalar" : "per-channel";
}

// Expects every output and gradient of a and b within tol; returns the largest relative error.
template <class T>
double expect_close(const Result<T>& a, const Result<T>& b, double tol, const std::string& what) {
  const std::pair<const char*, std::pair<const std::vector<T>*, const std::vector<T>*>> all[] = {
      {"o", {&a.o, &b.o}},    {"ht", {&a.ht, &b.ht}},         {"dq", {&a.dq, &b.dq}},
      {"dk", {&a.dk, &b.dk}}, {"dv", {&a.dv, &b.dv}},         {"dh0", {&a.dh0, &b.dh0}},
      {"dg", {&a.dg, &b.dg}}, {"dbeta", {&a.dbeta, &b.dbeta}}};
  double worst = 0;
  for (const auto& [name, xy] : all) {
    const double err = rel_err(*xy.first, *xy.second);
    EXPECT_LT(err, tol) << name << " " << what;
    worst = std::max(worst, err);
  }
  return worst;
}

TEST(DeltaRuleKernel, ChunkMatchesRecurrentOddSizes) {
  uint64_t seed = 7;
  double worst = 0;
  for (bool delta : {true, false})
    for (GateKind gate : {GateKind::kNone, GateKind::kScalar, GateKind::kPerChannel})
      for (int64_t T : {1, 63, 65, 130})
        for (int64_t chunk : {16, 64}) {
          const RecurrenceDims d{2, T, 2, 24, 40, gate, 1.0 / std::sqrt(24.0), chunk};
          const Problem<double> p = random_problem(d, delta, ++seed);
          const std::string what = std::string(delta ? "delta" : "linear") +
                                   " gate=" + gate_name(gate) + " T=" + std::to_string(T) +
                                   " chunk=" + std::to_string(chunk);
          worst = std::max(
              worst, expect_close(run(p, Form::kChunk), run(p, Form::kRecurrent), 1e-10, what));
        }
  std::printf("[chunk vs recurrent, f64] largest relative error %.1e\n", worst);
}

// Strong per-channel decays (G reaches -300 inside a chunk): the chunk form must neither
// overflow nor lose accuracy in float, where exp(-G) alone would be inf.
TEST(DeltaRuleKernel, ChunkStableUnderStrongDecayFloat) {
  for (bool delta : {true, false}) {
    const RecurrenceDims d{1, 130, 2, 24, 40, GateKind::kPerChannel, 1.0 / std::sqrt(24.0), 64};
    const Problem<double> p = random_problem(d, delta, 99, 10.0);
    const Result<double> ref = run(p, Form::kRecurrent);
    const Result<float> got = run(p.cast<float>(), Form::kChunk);
    EXPECT_LT(rel_err(got.o, ref.o), 1e-5);
    EXPECT_LT(rel_err(got.ht, ref.ht), 1e-5);
    for (auto [x, y] : {std::pair{&got.dq, &ref.dq},
                        {&got.dk, &ref.dk},
                        {&got.dv, &ref.dv},
                        {&got.dg, &ref.dg},
                        {&got.dh0, &ref.dh0}})
      EXPECT_LT(rel_err(*x, *y), 1e-4);
  }
}

// ---------------------------------------------------------------------------------------------
// Central finite differences in float64 of L = sum(o * do) + sum(ht * dht) for every input.

double loss(const Problem<double>& p, Form form) {
  const Result<double> r = run(p, form, /*backward=*/false);
  double s = 0;
  for (size_t i = 0; i < r.o.size(); ++i) s += r.o[i] * p.do_[i];
  for (size_t i = 0; i < r.ht.size(); ++i) s += r.ht[i] * p.dht[i];
  return s;
}

void check_fd(const Problem<double>& p, Form form, const std::string& what) {
  const Result<double> r = run(p, form);
  using Member = std::vector<double> Problem<double>::*;
  struct Input {
    const char* name;
    Member member;
    const std::vector<double>* grad;
  };
  std::vector<Input> inputs = {{"q", &Problem<double>::q, &r.dq},
                               {"k", &Problem<double>::k, &r.dk},
                               {"v", &Problem<double>::v, &r.dv},
                               {"h0", &Problem<double>::h0, &r.dh0}};
  if (!p.g.empty()) inputs.push_back({"g", &Problem<double>::g, &r.dg});
  if (p.delta) inputs.push_back({"beta", &Problem<double>::beta, &r.dbeta});
  const double eps = 1e-6;
  for (const auto& [name, member, grad] : inputs) {
    std::vector<double> fd((p.*member).size());
    Problem<double> pp = p;
    for (size_t i = 0; i < fd.size(); ++i) {
      const double x0 = (p.*member)[i];
      (pp.*member)[i] = x0 + eps;
      const double lp = loss(pp, form);
      (pp.*member)[i] = x0 - eps;
      const double lm = loss(pp, form);
      (pp.*member)[i] = x0;
      fd[i] = (lp - lm) / (2 * eps);
    }
    EXPECT_LT(rel_err(*grad, fd), 1e-7) << what << " d" << name;
  }
}

TEST(DeltaRuleKernel, FiniteDifferences) {
  uint64_t seed = 1000;
  for (bool delta : {true, false})
    for (GateKind gate : {GateKind::kNone, GateKind::kScalar, GateKind::kPerChannel}) {
      const RecurrenceDims d{1, 5, 2, 3, 4, gate, 0.7, 2};
      const Problem<double> p = random_problem(d, delta, ++seed);
      const std::string what = std::string(delta ? "delta" : "linear") + " gate=" + gate_name(gate);
      check_fd(p, Form::kRecurrent, what + " recurrent");
      check_fd(p, Form::kChunk, what + " chunk");
    }
}

TEST(DeltaRuleKernel, NullOptionalsMeanZero) {
  const RecurrenceDims d{1, 9, 2, 5, 6, GateKind::kPerChannel, 0.5, 4};
  Problem<double> p = random_problem(d, true, 5);
  Problem<double> z = p;
  std::fill(z.h0.begin(), z.h0.end(), 0.0);
  std::fill(z.dht.begin(), z.dht.end(), 0.0);
  p.h0.clear();
  p.dht.clear();
  for (Form f : {Form::kRecurrent, Form::kChunk}) expect_close(run(p, f), run(z, f), 1e-14, "null");
}

}  // namespace
