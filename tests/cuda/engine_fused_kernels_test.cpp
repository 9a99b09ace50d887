// The issue-10 decode kernels against the kernels they replace (kept as the oracles) and the
// host (part of kimi_cuda_engine_test): gemv_split against gemv and float64 sums, and
// expert_gemv_split against expert_gemv, on rows and widths not multiples of any tile (the
// scalar path), aligned widths (the 16-byte path), B = 1, 3, 8 and past the 8-row tile, every
// rows-per-warp choice; moe_route_fused against moe_router + moe_topk + moe_plan bit for bit
// (twice: the ticket must be left at zero); moe_combine_norm against moe_combine + rms_norm.
// Each case prints nothing on success; a wrong row, slot, stride or accumulate fails by O(1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <vector>

#include "tests/cuda/engine_kernel_util.h"

namespace kimi::inference::engine::cuda {
namespace {

using ktest::bf16_val;
using ktest::Dev;
using ktest::randn;
using ktest::to_bits;

#define GPU_OR_SKIP() \
  if (!ktest::have_gpu()) GTEST_SKIP() << "no CUDA device";

struct PlanBufs {
  Dev<int> n_active, active, offsets, sorted;
  PlanBufs(int E, int S)
      : n_active(std::vector<int>(1)),
        active(std::vector<int>(E)),
        offsets(std::vector<int>(E + 1)),
        sorted(std::vector<int>(S)) {}
  MoePlan plan() const { return {n_active.p, active.p, offsets.p, sorted.p}; }
};

// y0 (+)= W x for gemv_split (each rows_per_warp) and gemv, against the float64 sum.
TEST(EngineFusedKernels, GemvSplitMatchesTheGemvAndTheHost) {
  GPU_OR_SKIP();
  std::mt19937 rng(31);
  struct Case {
    int N, K;
    bool f32, misaligned;  // x in fp32; W one element off 16 bytes (the scalar path)
  };
  const std::vector<Case> cases = {
      {37, 60, false, false},   {37, 64, false, false},   {130, 264, false, false},
      {61, 1000, false, false}, {19, 2304, false, false}, {45, 128, true, false},
      {33, 124, true, false},   {29, 256, false, true},   {300, 40, false, false},
  };
  int checked = 0;
  for (const Case& c : cases)
    for (int B : {1, 3, 8, 11})
      for (int rb : {0, 1, 2, 4})
        for (bool acc : {false, true}) {
          const int xs = c.K + (c.K % 8 == 0 ? 8 : 3), ys = c.N + 2;
          std::vector<float> w = randn(size_t(c.N) * c.K + 8, rng), x = randn(size_t(B) * xs, rng);
          const std::vector<uint16_t> wb = to_bits(w);
          std::vector<uint16_t> xb;
          if (!c.f32) xb = to_bits(x);
          const std::vector<float> y0 = randn(size_t(B) * ys, rng);
          Dev<uint16_t> dw(wb), dxb(c.f32 ? std::vector<uint16_t>(1) : xb);
          Dev<float> dxf(c.f32 ? x : std::vector<float>(1)), dy(y0), dg(y0);
          const int off = c.misaligned ? 1 : 0;
          const bf16* W = dw.b() + off;
          const void* X = c.f32 ? static_cast<const void*>(dxf.p) : static_cast<const void*>(dxb.p);
          gemv_split(W, c.N, c.K, X, c.f32, xs, B, dy.p, ys, acc, nullptr, rb);
          gemv(W, c.N, c.K, X, c.f32, xs, B, dg.p, ys, acc, nullptr);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          const std::vector<float> y = dy.get(), g = dg.get();
          double worst = 0, worst_old = 0;
          for (int b = 0; b < B; ++b)
            for (int n = 0; n < ys; ++n) {
              const size_t at = size_t(b) * ys + n;
              if (n >= c.N) {  // the stride's padding stays as it was
                EXPECT_EQ(y[at], y0[at]) << "padding written, N " << c.N << " B " << B;
                continue;
              }
              double ref = acc ? y0[at] : 0.0, mag = 1;
              for (int k = 0; k < c.K; ++k) {
                const double p = double(w[off + size_t(n) * c.K + k]) * x[size_t(b) * xs + k];
                ref += p, mag += std::abs(p);
              }
              worst = std::max(worst, std::abs(ref - y[at]) / mag);
              worst_old = std::max(worst_old, std::abs(double(g[at]) - y[at]) / mag);
            }
          EXPECT_LT(worst, 1e-5) << "N " << c.N << " K " << c.K << " B " << B << " rb " << rb
                                 << (c.f32 ? " f32" : " bf16") << (acc ? " accumulate" : "");
          EXPECT_LT(worst_old, 1e-5) << "vs gemv: N " << c.N << " K " << c.K << " B " << B;
          ++checked;
        }
  std::printf("[ gemv_split ] %d cases against gemv and the host\n", checked);
}

// Each token's top_k distinct experts at random -> the plan, then expert_gemv_split against
// expert_gemv and the host. max_count is the batch, except one case that understates it (it
// picks a kernel, never the result).
TEST(EngineFusedKernels, ExpertGemvSplitMatchesExpertGemvAndTheHost) {
  GPU_OR_SKIP();
  std::mt19937 rng(33);
  struct Case {
    int K, N, E, top_k, tokens, in_div, max_count;
  };
  const std::vector<Case> cases = {
      {64, 48, 6, 3, 1, 3, 1},   {40, 24, 6, 3, 3, 3, 3},   {60, 18, 6, 3, 8, 1, 8},
      {264, 130, 9, 2, 3, 2, 3}, {1000, 70, 5, 2, 8, 1, 8}, {2304, 37, 16, 8, 1, 8, 1},
      {72, 65, 4, 2, 11, 2, 11}, {18, 60, 6, 3, 3, 1, 1},   {1024, 45, 12, 4, 8, 4, 8},
  };
  for (const Case& c : cases)
    for (int rb : {0, 1, 2, 4}) {
      const int S = c.tokens * c.top_k, rows = c.in_div == 1 ? S : c.tokens;
      std::vector<int> ids(S);
      for (int t = 0; t < c.tokens; ++t) {
        std::vector<int> e(c.E);
        for (int i = 0; i < c.E; ++i) e[i] = i;
        std::shuffle(e.begin(), e.end(), rng);
        for (int k = 0; k < c.top_k; ++k) ids[t * c.top_k + k] = e[k];
      }
      Dev<int> dids(ids);
      PlanBufs bufs(c.E, S);
      const MoePlan plan = bufs.plan();
      moe_plan(dids.p, S, c.E, plan, nullptr);
      std::vector<float> w = randn(size_t(c.E) * c.N * c.K, rng),
                         x = randn(size_t(rows) * c.K, rng);
      const auto wb = to_bits(w), xb = to_bits(x);
      Dev<uint16_t> dw(wb), dx(xb);
      Dev<float> dy(std::vector<float>(size_t(S) * c.N, -7.f)),
          dg(std::vector<float>(size_t(S) * c.N, -7.f));
      const int groups = std::min(c.E, S);
      const int64_t stride = int64_t{c.N} * c.K;
      expert_gemv_split(dw.b(), stride, c.N, c.K, dx.b(), c.K, c.in_div, plan, groups, c.max_count,
                        dy.p, c.N, nullptr, rb);
      expert_gemv(dw.b(), stride, c.N, c.K, dx.b(), c.K, c.in_div, plan, groups, dg.p, c.N,
                  nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> y = dy.get(), g = dg.get();
      double worst = 0, worst_old = 0;
      for (int i = 0; i < S; ++i)
        for (int n = 0; n < c.N; ++n) {
          double ref = 0, mag = 1;
          for (int k = 0; k < c.K; ++k) {
            const double p =
                double(w[(size_t(ids[i]) * c.N + n) * c.K + k]) * x[size_t(i / c.in_div) * c.K + k];
            ref += p, mag += std::abs(p);
          }
          const size_t at = size_t(i) * c.N + n;
          worst = std::max(worst, std::abs(ref - y[at]) / mag);
          worst_old = std::max(worst_old, std::abs(double(g[at]) - y[at]) / mag);
        }
      EXPECT_LT(worst, 1e-5) << "K " << c.K << " N " << c.N << " tokens " << c.tokens << " rb "
                             << rb;
      EXPECT_LT(worst_old, 1e-5) << "vs expert_gemv: K " << c.K << " N " << c.N;
    }
}

// The down projections from the gate_up output (gemv_swiglu, expert_swiglu) against swiglu()
// then gemv_split / expert_gemv_split (the same sums of the same bf16 inputs) and the host.
TEST(EngineFusedKernels, SwigluDownProjectionsEqualSwigluThenTheGemv) {
  GPU_OR_SKIP();
  std::mt19937 rng(39);
  struct Case {
    int N, K, pad;
  };
  for (const Case& c : {Case{37, 18, 0}, Case{64, 24, 8}, Case{130, 1024, 0}, Case{45, 100, 3}})
    for (int B : {1, 3, 8}) {
      const int gs = 2 * c.K + c.pad;  // gate_up row stride
      std::vector<float> w = randn(size_t(c.N) * c.K, rng);
      const auto wb = to_bits(w);
      const std::vector<float> gu = randn(size_t(B) * gs, rng);
      Dev<uint16_t> dw(wb), act(std::vector<uint16_t>(size_t(B) * c.K));
      Dev<float> dgu(gu), y_new(std::vector<float>(size_t(B) * c.N, 0.5f)),
          y_old(std::vector<float>(size_t(B) * c.N, 0.5f));
      // swiglu() reads rows of 2h with no padding: give it a packed copy.
      std::vector<float> packed;
      for (int b = 0; b < B; ++b)
        packed.insert(packed.end(), gu.begin() + size_t(b) * gs,
                      gu.begin() + size_t(b) * gs + 2 * c.K);
      Dev<float> dpacked(packed);
      swiglu(dpacked.p, B, c.K, reinterpret_cast<bf16*>(act.p), nullptr);
      gemv_split(dw.b(), c.N, c.K, act.p, false, c.K, B, y_old.p, c.N, true, nullptr);
      gemv_swiglu(dw.b(), c.N, c.K, dgu.p, gs, B, y_new.p, c.N, true, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> yn = y_new.get(), yo = y_old.get();
      double worst = 0, worst_host = 0;
      for (int b = 0; b < B; ++b)
        for (int n = 0; n < c.N; ++n) {
          double ref = 0.5, mag = 1;
          for (int k = 0; k < c.K; ++k) {
            const double g = gu[size_t(b) * gs + k], u = gu[size_t(b) * gs + c.K + k];
            const double a = g / (1 + std::exp(-g)) * u;
            ref += w[size_t(n) * c.K + k] * a, mag += std::abs(w[size_t(n) * c.K + k] * a);
          }
          const size_t at = size_t(b) * c.N + n;
          worst = std::max(worst, std::abs(double(yn[at]) - yo[at]) / mag);
          // The host's activations are not rounded to bf16: 2^-8 of the magnitude.
          worst_host = std::max(worst_host, std::abs(ref - yn[at]) / mag);
        }
      EXPECT_LT(worst, 1e-6) << "vs swiglu + gemv_split: N " << c.N << " K " << c.K << " B " << B;
      EXPECT_LT(worst_host, 4e-3) << "vs the host: N " << c.N << " K " << c.K << " B " << B;

      // The routed experts: 5 experts, top-2 per token, gu per slot.
      const int E = 5, top_k = 2, S = B * top_k;
      std::vector<int> ids(S);
      for (int t = 0; t < B; ++t) {
        std::vector<int> e = {0, 1, 2, 3, 4};
        std::shuffle(e.begin(), e.end(), rng);
        ids[t * top_k] = e[0], ids[t * top_k + 1] = e[1];
      }
      Dev<int> dids(ids);
      PlanBufs bufs(E, S);
      const MoePlan plan = bufs.plan();
      moe_plan(dids.p, S, E, plan, nullptr);
      std::vector<float> we = randn(size_t(E) * c.N * c.K, rng);
      const auto web = to_bits(we);
      const std::vector<float> gs_e = randn(size_t(S) * 2 * c.K, rng);
      Dev<uint16_t> dwe(web), act_e(std::vector<uint16_t>(size_t(S) * c.K));
      Dev<float> dgs(gs_e), ye_new(std::vector<float>(size_t(S) * c.N)),
          ye_old(std::vector<float>(size_t(S) * c.N));
      const int64_t stride = int64_t{c.N} * c.K;
      swiglu(dgs.p, S, c.K, reinterpret_cast<bf16*>(act_e.p), nullptr);
      expert_gemv_split(dwe.b(), stride, c.N, c.K, act_e.b(), c.K, 1, plan, std::min(E, S), B,
                        ye_old.p, c.N, nullptr);
      expert_swiglu(dwe.b(), stride, c.N, c.K, dgs.p, 2 * c.K, plan, std::min(E, S), B, ye_new.p,
                    c.N, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> en = ye_new.get(), eo = ye_old.get();
      double worst_e = 0;
      for (size_t i = 0; i < en.size(); ++i)
        worst_e = std::max(worst_e, std::abs(double(en[i]) - eo[i]) / (1 + std::abs(eo[i])));
      EXPECT_LT(worst_e, 1e-6) << "experts vs swiglu + expert_gemv_split: N " << c.N << " K " << c.K
                               << " B " << B;
      // Not vacuous: every slot's row was written (the old buffer started at zero).
      double sum_abs = 0;
      for (float v : en) sum_abs += std::abs(v);
      EXPECT_GT(sum_abs, 0.0);
    }
}

// The plan's lists per expert as sets (their order within an expert is free).
std::vector<std::set<int>> plan_sets(const MoePlan& p, int E) {
  int n = 0;
  cudaMemcpy(&n, p.n_active, 4, cudaMemcpyDeviceToHost);
  std::vector<int> active(E), offsets(E + 1);
  cudaMemcpy(active.data(), p.active, E * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(offsets.data(), p.offsets, (E + 1) * 4, cudaMemcpyDeviceToHost);
  std::vector<int> sorted(offsets[n]);
  cudaMemcpy(sorted.data(), p.sorted, sorted.size() * 4, cudaMemcpyDeviceToHost);
  std::vector<std::set<int>> out(E);
  for (int a = 0; a < n; ++a)
    out[active[a]] = std::set<int>(sorted.begin() + offsets[a], sorted.begin() + offsets[a + 1]);
  return out;
}

TEST(EngineFusedKernels, FusedRoutingEqualsTheThreeKernels) {
  GPU_OR_SKIP();
  std::mt19937 rng(35);
  struct Case {
    int E, d, top_k;
    bool renorm;
  };
  for (const Case& c : {Case{13, 40, 4, true}, Case{256, 2304, 8, true}, Case{6, 67, 3, true},
                        Case{37, 100, 1, false}, Case{256, 130, 8, true}})
    for (int B : {1, 3, 8}) {
      const std::vector<float> x = randn(size_t(B) * c.d, rng),
                               router = randn(size_t(c.E) * c.d, rng, 0.05f),
                               bias = randn(c.E, rng, 0.05f);
      Dev<float> dx(x), dr(router), db(bias);
      const int S = B * c.top_k;
      PlanBufs b_old(c.E, S), b_new(c.E, S);
      const MoePlan p_old = b_old.plan(), p_new = b_new.plan();
      Dev<float> s_old(std::vector<float>(size_t(B) * c.E)), s_new(std::vector<float>(B * c.E));
      Dev<int> i_old{std::vector<int>(S)}, i_new{std::vector<int>(S)};
      Dev<float> w_old{std::vector<float>(S)}, w_new{std::vector<float>(S)};
      Dev<unsigned> ticket(std::vector<unsigned>(1, 0u));
      moe_router(dx.p, dr.p, B, c.d, c.E, s_old.p, nullptr);
      moe_topk(s_old.p, db.p, B, c.E, c.top_k, c.renorm, 2.446f, i_old.p, w_old.p, nullptr);
      moe_plan(i_old.p, S, c.E, p_old, nullptr);
      for (int rep = 0; rep < 2; ++rep) {  // the second launch finds the ticket at zero again
        moe_route_fused(dx.p, dr.p, db.p, B, c.d, c.E, c.top_k, c.renorm, 2.446f, s_new.p, i_new.p,
                        w_new.p, p_new, ticket.p, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::string at = "E " + std::to_string(c.E) + " d " + std::to_string(c.d) +
                               " top_k " + std::to_string(c.top_k) + " B " + std::to_string(B) +
                               " launch " + std::to_string(rep);
        EXPECT_EQ(s_new.get(), s_old.get()) << "scores, " << at;
        EXPECT_EQ(i_new.get(), i_old.get()) << "ids, " << at;
        EXPECT_EQ(w_new.get(), w_old.get()) << "weights, " << at;
        EXPECT_EQ(plan_sets(p_new, c.E), plan_sets(p_old, c.E)) << "plan, " << at;
        std::vector<int> off_old(c.E + 1), off_new(c.E + 1);
        cudaMemcpy(off_old.data(), p_old.offsets, (c.E + 1) * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(off_new.data(), p_new.offsets, (c.E + 1) * 4, cudaMemcpyDeviceToHost);
        EXPECT_EQ(off_new, off_old) << "plan offsets, " << at;
        EXPECT_EQ(ticket.get()[0], 0u) << "ticket left at zero, " << at;
      }
    }
}

TEST(EngineFusedKernels, CombineNormEqualsCombineThenNorm) {
  GPU_OR_SKIP();
  std::mt19937 rng(37);
  for (int d : {67, 2304})
    for (int B : {1, 3, 8}) {
      const int top_k = 3;
      const std::vector<float> y = randn(size_t(B) * top_k * d, rng), wts = randn(B * top_k, rng),
                               h0 = randn(size_t(B) * d, rng);
      std::vector<float> nw = randn(d, rng, 0.2f);
      for (float& v : nw) v += 1.f;
      const auto nwb = to_bits(nw);
      Dev<float> dy(y), dw(wts), h_old(h0), h_new(h0);
      Dev<uint16_t> dn(nwb), x_old(std::vector<uint16_t>(size_t(B) * d)),
          x_new(std::vector<uint16_t>(size_t(B) * d));
      moe_combine(dy.p, dw.p, B, top_k, d, h_old.p, nullptr);
      rms_norm(h_old.p, d, dn.b(), B, d, 1e-6f, reinterpret_cast<bf16*>(x_old.p), nullptr, nullptr);
      moe_combine_norm(dy.p, dw.p, B, top_k, d, h_new.p, dn.b(), 1e-6f,
                       reinterpret_cast<bf16*>(x_new.p), nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_EQ(h_new.get(), h_old.get()) << "h, d " << d << " B " << B;
      EXPECT_EQ(x_new.get(), x_old.get()) << "normed x, d " << d << " B " << B;
      // And against the host: a combine or norm that is wrong in both kernels alike.
      const std::vector<float> h = h_new.get();
      const std::vector<uint16_t> xn = x_new.get();
      for (int b = 0; b < B; ++b) {
        double ss = 0;
        std::vector<double> hr(d);
        for (int n = 0; n < d; ++n) {
          double v = h0[size_t(b) * d + n];
          for (int k = 0; k < top_k; ++k)
            v += double(wts[b * top_k + k]) * y[(size_t(b) * top_k + k) * d + n];
          hr[n] = v, ss += v * v;
          EXPECT_NEAR(h[size_t(b) * d + n], v, 1e-5 * (1 + std::abs(v)));
        }
        const double r = 1 / std::sqrt(ss / d + 1e-6);
        for (int n = 0; n < d; ++n) {
          const double want = hr[n] * r * nw[n];
          EXPECT_NEAR(bf16_val(xn[size_t(b) * d + n]), want, 1e-2 * (1 + std::abs(want)));
        }
      }
    }
}

}  // namespace
}  // namespace kimi::inference::engine::cuda
