// Tests of the causal GQA attention and RoPE CPU kernels (core/cpu/attention.h,
// rope.h): golden tensors (tests/golden/linear_ops_small.safetensors, prefix attention.),
// a naive row-by-row softmax reference across several tiles, and float64 finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "core/cpu/attention.h"
#include "core/cpu/rope.h"
#include "tests/golden.h"

namespace {

using kimi::AttentionDims;
using kimi::test::rel_err;

template <class T>
struct Attn {
  AttentionDims d;
  std::vector<T> q, k, v, do_;
  std::vector<T> o, lse, dq, dk, dv;

  void forward() {
    o.assign(d.B * d.Tq * d.Hq * d.Dv, T(0));
    lse.assign(d.B * d.Hq * d.Tq, T(0));
    kimi::cpu::causal_attention_fwd<T>(d, q.data(), k.data(), v.data(), o.data(), lse.data());
  }
  void backward() {
    dq.assign(q.size(), T(0));
    dk.assign(k.size(), T(0));
    dv.assign(v.size(), T(0));
    kimi::cpu::causal_attention_bwd<T>(d, q.data(), k.data(), v.data(), o.data(), lse.data(),
                                       do_.data(), dq.data(), dk.data(), dv.data());
  }
};

std::vector<double> normal(std::mt19937_64& rng, size_t n) {
  std::normal_distribution<double> n01;
  std::vector<double> x(n);
  for (auto& e : x) e = n01(rng);
  return x;
}

Attn<double> random_attn(const AttentionDims& d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Attn<double> a;
  a.d = d;
  a.q = normal(rng, d.B * d.Tq * d.Hq * d.D);
  a.k = normal(rng, d.B * d.Tk * d.Hkv * d.D);
  a.v = normal(rng, d.B * d.Tk * d.Hkv * d.Dv);
  a.do_ = normal(rng, d.B * d.Tq * d.Hq * d.Dv);
  return a;
}

// Row-by-row softmax, straight from the definition.
void naive_attention(const Attn<double>& a, std::vector<double>& o, std::vector<double>& lse) {
  const AttentionDims& d = a.d;
  o.assign(d.B * d.Tq * d.Hq * d.Dv, 0.0);
  lse.assign(d.B * d.Hq * d.Tq, 0.0);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.Hq; ++h)
      for (int64_t i = 0; i < d.Tq; ++i) {
        const int64_t hk = h / (d.Hq / d.Hkv), last = i + d.Tk - d.Tq;
        std::vector<double> s(last + 1);
        double m = -INFINITY, z = 0;
        for (int64_t j = 0; j <= last; ++j) {
          s[j] = 0;
          for (int64_t c = 0; c < d.D; ++c)
            s[j] += a.q[((b * d.Tq + i) * d.Hq + h) * d.D + c] *
                    a.k[((b * d.Tk + j) * d.Hkv + hk) * d.D + c];
          s[j] *= d.scale;
          m = std::max(m, s[j]);
        }
        for (int64_t j = 0; j <= last; ++j) z += std::exp(s[j] - m);
        lse[(b * d.Hq + h) * d.Tq + i] = m + std::log(z);
        for (int64_t j = 0; j <= last; ++j)
          for (int64_t c = 0; c < d.Dv; ++c)
            o[((b * d.Tq + i) * d.Hq + h) * d.Dv + c] +=
                std::exp(s[j] - m) / z * a.v[((b * d.Tk + j) * d.Hkv + hk) * d.Dv + c];
      }
}

// Central differences of L = sum(o * do) for q, k, v against the kernel's backward.
void check_fd(Attn<double> a, double tol) {
  a.forward();
  a.backward();
  auto loss = [&]() {
    Attn<double> t = a;
    t.forward();
    double s = 0;
    for (size_t i = 0; i < t.o.size(); ++i) s += t.o[i] * t.do_[i];
    return s;
  };
  const double eps = 1e-6;
  for (auto [x, g, name] :
       {std::tuple{&a.q, &a.dq, "dq"}, {&a.k, &a.dk, "dk"}, {&a.v, &a.dv, "dv"}}) {
    std::vector<double> fd(x->size());
    for (size_t i = 0; i < fd.size(); ++i) {
      const double x0 = (*x)[i];
      (*x)[i] = x0 + eps;
      const double lp = loss();
      (*x)[i] = x0 - eps;
      const double lm = loss();
      (*x)[i] = x0;
      fd[i] = (lp - lm) / (2 * eps);
    }
    EXPECT_LT(rel_err(*g, fd), tol) << name;
  }
}

constexpr const char* kLinearOps = "linear_ops_small.safetensors";

template <class T>
void check_attention_golden(const kimi::test::GoldenFile& f, const char* label) {
  Attn<T> a;
  // B=2 T=100 H=2, D=32 (q, k), Dv=48; no GQA; scale 1/sqrt(D) (docs/math.md#mixers).
  a.d = AttentionDims{2, 100, 100, 2, 2, 32, 48, 1.0 / std::sqrt(32.0)};
  auto get = [&](const char* n) {
    const auto x = f.get(std::string("attention.") + n).data;
    return std::vector<T>(x.begin(), x.end());
  };
  a.q = get("q"), a.k = get("k"), a.v = get("v"), a.do_ = get("do");
  a.forward();
  a.backward();
  const double eo = rel_err(a.o, f.get("attention.o").data);
  const double eq = rel_err(a.dq, f.get("attention.dq").data);
  const double ek = rel_err(a.dk, f.get("attention.dk").data);
  const double ev = rel_err(a.dv, f.get("attention.dv").data);
  EXPECT_LT(eo, 1e-5);
  EXPECT_LT(eq, 1e-4);
  EXPECT_LT(ek, 1e-4);
  EXPECT_LT(ev, 1e-4);
  std::printf("[golden] attention %s: o %.1e dq %.1e dk %.1e dv %.1e\n", label, eo, eq, ek, ev);
}

TEST(AttentionKernelGolden, MatchesReference) {
  KIMI_SKIP_WITHOUT_GOLDEN(kLinearOps);
  const kimi::test::GoldenFile f(kLinearOps);
  check_attention_golden<double>(f, "f64");
  check_attention_golden<float>(f, "f32");
}

// Several query and key tiles (64 each), GQA and Tq < Tk (a prefix already in the cache).
TEST(AttentionKernel, MatchesNaiveAcrossTiles) {
  for (auto d :
       {AttentionDims{2, 70, 150, 4, 2, 8, 6, 0.3}, AttentionDims{1, 1, 130, 2, 1, 4, 4, 1.0},
        AttentionDims{1, 129, 129, 3, 3, 5, 7, 0.5}}) {
    Attn<double> a = random_attn(d, 11);
    a.forward();
    std::vector<double> o, lse;
    naive_attention(a, o, lse);
    EXPECT_LT(rel_err(a.o, o), 1e-13);
    EXPECT_LT(rel_err(a.lse, lse), 1e-13);
  }
}

TEST(AttentionKernel, FiniteDifferencesGqa) {
  check_fd(random_attn(AttentionDims{2, 3, 7, 4, 2, 3, 2, 0.6}, 3), 1e-7);
  // Across tiles: 70 queries and 135 keys.
  check_fd(random_attn(AttentionDims{1, 70, 135, 2, 1, 2, 2, 0.8}, 4), 1e-6);
}

// ---------------------------------------------------------------------------------------------
// RoPE

TEST(AttentionKernel, RopeMatchesHandComputedValue) {
  // D=4, theta=100: a_0 = pos, a_1 = pos / 10; pairs (0,2), (1,3).
  std::vector<double> x = {1, 2, 3, 4};
  kimi::cpu::rope_apply(x.data(), 1, 1, 1, 4, 3, 100.0, false);
  const double c0 = std::cos(3.0), s0 = std::sin(3.0), c1 = std::cos(0.3), s1 = std::sin(0.3);
  const std::vector<double> want = {1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0,
                                    4 * c1 + 2 * s1};
  EXPECT_LT(rel_err(x, want), 1e-15);
}

TEST(AttentionKernel, RopeInverseAndRelativePosition) {
  std::mt19937_64 rng(5);
  const int64_t B = 2, T = 9, H = 3, D = 8;
  const std::vector<double> x0 = normal(rng, B * T * H * D);
  std::vector<double> x = x0;
  kimi::cpu::rope_apply(x.data(), B, T, H, D, 17, 10000.0, false);
  kimi::cpu::rope_apply(x.data(), B, T, H, D, 17, 10000.0, true);
  EXPECT_LT(rel_err(x, x0), 1e-14);
  // <R(m) q, R(n) k> depends on m - n only.
  auto dot_at = [&](int64_t m, int64_t n) {
    std::vector<double> q(x0.begin(), x0.begin() + D), k(x0.begin() + D, x0.begin() + 2 * D);
    kimi::cpu::rope_apply(q.data(), 1, 1, 1, D, m, 10000.0, false);
    kimi::cpu::rope_apply(k.data(), 1, 1, 1, D, n, 10000.0, false);
    double s = 0;
    for (int64_t i = 0; i < D; ++i) s += q[i] * k[i];
    return s;
  };
  EXPECT_NEAR(dot_at(5, 2), dot_at(1003, 1000), 1e-10);
  // float: angles are computed in double, so large positions stay accurate.
  std::vector<float> xf(x0.begin(), x0.end());
  std::vector<double> xd = x0;
  kimi::cpu::rope_apply(xf.data(), B, T, H, D, 1000000, 10000.0, false);
  kimi::cpu::rope_apply(xd.data(), B, T, H, D, 1000000, 10000.0, false);
  EXPECT_LT(rel_err(xf, xd), 1e-6);
}

TEST(AttentionKernel, RopeFiniteDifferences) {
  std::mt19937_64 rng(6);
  const int64_t B = 1, T = 4, H = 2, D = 6;
  const std::vector<double> x0 = normal(rng, B * T * H * D), w = normal(rng, B * T * H * D);
  auto loss = [&](std::vector<double> x) {
    kimi::cpu::rope_apply(x.data(), B, T, H, D, 2, 500.0, false);
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += x[i] * w[i];
    return s;
  };
  std::vector<double> grad = w;  // the backward of the rotation is its inverse
  kimi::cpu::rope_apply(grad.data(), B, T, H, D, 2, 500.0, true);
  std::vector<double> fd(x0.size());
  for (size_t i = 0; i < fd.size(); ++i) {
    std::vector<double> xp = x0, xm = x0;
    xp[i] += 1e-6;
    xm[i] -= 1e-6;
    fd[i] = (loss(xp) - loss(xm)) / 2e-6;
  }
  EXPECT_LT(rel_err(grad, fd), 1e-8);
}

}  // namespace
