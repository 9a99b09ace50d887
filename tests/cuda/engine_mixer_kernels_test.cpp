// The engine's fused KDA decode step and MLA latent decode against double-precision host
// references of the same equations (models/kda_layer.cpp, models/mla_layer.cpp attend_absorbed),
// on odd sizes, with batch rows mapped to other slots and slots at different lengths (part of
// kimi_cuda_engine_test). Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "inference/engine/cuda/engine_kernels.h"
#include "tests/cuda/engine_kernel_util.h"

namespace kimi::inference::engine::cuda {
namespace {

using ktest::bf16_val;
using ktest::Dev;
using ktest::have_gpu;
using ktest::randn;
using ktest::to_bits;

double silu(double x) { return x / (1 + std::exp(-x)); }
double sigm(double x) { return 1 / (1 + std::exp(-x)); }

// One KDA case: head_dim K, the value columns over vsplit blocks (1: the one-block kernel).
void kda_case(int K, int vsplit) {
  SCOPED_TRACE("K " + std::to_string(K) + " vsplit " + std::to_string(vsplit));
  std::mt19937 rng(11);
  const int H = 2, W = 4, HK = H * K, slots = 3, B = 2, steps = 3;
  const int rows = 3 * HK + 2 * K + H;
  std::vector<float> cq = randn(HK * W, rng, 0.5f), ck = randn(HK * W, rng, 0.5f),
                     cv = randn(HK * W, rng, 0.5f), gb = randn(HK, rng, 0.3f),
                     on = randn(K, rng, 0.2f);
  for (float& x : on) x += 1.f;
  const auto cqb = to_bits(cq), ckb = to_bits(ck), cvb = to_bits(cv), gbb = to_bits(gb),
             onb = to_bits(on);
  const std::vector<float> a_log = randn(H, rng, 0.5f), dt = randn(HK, rng, 0.5f);
  std::vector<float> state = randn(size_t(slots) * H * K * K, rng, 0.1f);
  std::vector<float> tails = randn(size_t(slots) * 3 * (W - 1) * HK, rng, 0.5f);
  Dev<uint16_t> d_cq(cqb), d_ck(ckb), d_cv(cvb), d_gb(gbb), d_on(onb);
  Dev<float> d_alog(a_log), d_dt(dt), d_state(state), d_tails(tails);
  const std::vector<int> slot_of = {2, 0};
  Dev<int> d_slots(slot_of);
  std::vector<double> S(state.begin(), state.end()), T(tails.begin(), tails.end());
  for (int step = 0; step < steps; ++step) {
    const std::vector<float> proj = randn(B * rows, rng), f = randn(B * HK, rng),
                             z = randn(B * HK, rng);
    Dev<float> d_proj(proj), d_f(f), d_z(z);
    Dev<uint16_t> d_out(std::vector<uint16_t>(B * HK));
    KdaStep a{};
    a.B = B, a.H = H, a.K = K, a.W = W, a.slots = d_slots.p, a.proj = d_proj.p;
    a.proj_stride = rows, a.f = d_f.p, a.z = d_z.p;
    a.conv_q = d_cq.b(), a.conv_k = d_ck.b(), a.conv_v = d_cv.b();
    a.a_log = d_alog.p, a.dt_bias = d_dt.p, a.g_bias = d_gb.b(), a.o_norm = d_on.b();
    a.state = d_state.p, a.tails = d_tails.p, a.norm_eps = 1e-5f;
    a.out = reinterpret_cast<bf16*>(d_out.p);
    Dev<float> d_opart(std::vector<float>(B * HK)), d_ss(std::vector<float>(B * H * vsplit));
    Dev<unsigned> d_tickets(std::vector<unsigned>(B * H, 0u));
    a.vsplit = vsplit, a.o_part = d_opart.p, a.ss_part = d_ss.p, a.tickets = d_tickets.p;
    kda_decode(a, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    for (unsigned t : d_tickets.get()) EXPECT_EQ(t, 0u) << "a ticket not left at zero";
    const std::vector<uint16_t> out = d_out.get();
    for (int b = 0; b < B; ++b) {
      const int s = slot_of[b];
      for (int h = 0; h < H; ++h) {
        std::vector<double> q(K), k(K), v(K);
        const std::vector<float>* conv[3] = {&cq, &ck, &cv};
        std::vector<double>* dst[3] = {&q, &k, &v};
        for (int which = 0; which < 3; ++which)
          for (int j = 0; j < K; ++j) {
            const int c = h * K + j;
            double* tail = &T[(size_t(s) * 3 + which) * (W - 1) * HK + c];
            const double x = proj[b * rows + which * HK + c];
            double y = (*conv[which])[c * W + W - 1] * x;
            for (int t = 0; t < W - 1; ++t) y += (*conv[which])[c * W + t] * tail[t * HK];
            for (int t = 0; t + 1 < W - 1; ++t) tail[t * HK] = tail[(t + 1) * HK];
            tail[(W - 2) * HK] = x;
            (*dst[which])[j] = silu(y);
          }
        double qq = 0, kk = 0;
        for (int j = 0; j < K; ++j) qq += q[j] * q[j], kk += k[j] * k[j];
        for (int j = 0; j < K; ++j)
          q[j] *= 1 / std::sqrt(qq + 1e-6) / std::sqrt(double(K)), k[j] /= std::sqrt(kk + 1e-6);
        const double beta = sigm(proj[b * rows + 3 * HK + 2 * K + h]);
        double* Sh = &S[(size_t(s) * H + h) * K * K];
        std::vector<double> o(K, 0.0);
        for (int i = 0; i < K; ++i) {
          const double sp = std::log1p(std::exp(double(f[b * HK + h * K + i]) + dt[h * K + i]));
          const double decay = std::exp(-std::exp(double(a_log[h])) * sp);
          for (int j = 0; j < K; ++j) Sh[i * K + j] *= decay;
        }
        for (int j = 0; j < K; ++j) {
          double u = 0;
          for (int i = 0; i < K; ++i) u += k[i] * Sh[i * K + j];
          const double delta = beta * (v[j] - u);
          for (int i = 0; i < K; ++i) Sh[i * K + j] += k[i] * delta, o[j] += q[i] * Sh[i * K + j];
        }
        double oo = 0;
        for (int j = 0; j < K; ++j) oo += o[j] * o[j];
        const double r = 1 / std::sqrt(oo / K + 1e-5);
        for (int j = 0; j < K; ++j) {
          const double want = o[j] * r * on[j] * sigm(z[b * HK + h * K + j] + gb[h * K + j]);
          const double got = bf16_val(out[b * HK + h * K + j]);
          EXPECT_NEAR(got, want, 1e-2 * (1 + std::abs(want))) << "step " << step << " b " << b;
        }
      }
    }
  }
  const std::vector<float> got_s = d_state.get(), got_t = d_tails.get();
  double worst = 0;
  for (size_t i = 0; i < S.size(); ++i) worst = std::max(worst, std::abs(got_s[i] - S[i]));
  for (size_t i = 0; i < T.size(); ++i) worst = std::max(worst, std::abs(got_t[i] - T[i]));
  EXPECT_LT(worst, 1e-4) << "state / tails (slot 1 untouched, slots 0 and 2 stepped)";
}

// The one-block kernel and the split one (columns over 2..5 blocks, one block with no columns
// at K 12 / 5) against the host, on an odd head_dim and the 48B model's 128.
TEST(EngineKernels, KdaDecodeMatchesTheHostRecurrence) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (int vsplit : {1, 2, 3, 5}) kda_case(12, vsplit);
  for (int vsplit : {1, 4}) kda_case(128, vsplit);
}

TEST(EngineKernels, MlaDecodeMatchesTheHostAbsorbedAttention) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(13);
  const int H = 3, nope = 10, rope = 6, vd = 14, rank = 20, D = rank + rope;
  const int slots = 3, B = 3, max_tokens = 80;
  const std::vector<int> slot_of = {1, 2, 0}, len = {37, 0, 70};  // lengths by slot
  const int rows = H * (nope + rope) + D;
  std::vector<float> kvn = randn(rank, rng, 0.2f), kvb = randn(size_t(H) * (nope + vd) * rank, rng);
  for (float& x : kvn) x += 1.f;
  const auto kvnb = to_bits(kvn), kvbb = to_bits(kvb);
  std::vector<float> cache_f = randn(size_t(slots) * max_tokens * D, rng);
  const auto cache_b = to_bits(cache_f);
  const std::vector<float> proj = randn(B * rows, rng);
  Dev<uint16_t> d_kvn(kvnb), d_kvb(kvbb), d_cache(cache_b),
      d_out(std::vector<uint16_t>(B * H * vd));
  Dev<float> d_proj(proj), d_qa(std::vector<float>(B * H * D));
  const int splits = 4;
  Dev<float> d_po(std::vector<float>(B * splits * H * rank)),
      d_pml(std::vector<float>(B * splits * H * 2)), d_olat(std::vector<float>(B * H * rank));
  Dev<int> d_slots(slot_of), d_len(len);
  MlaStep a{};
  a.B = B, a.H = H, a.nope = nope, a.rope = rope, a.vd = vd, a.rank = rank;
  a.slots = d_slots.p, a.lengths = d_len.p, a.proj = d_proj.p, a.proj_stride = rows;
  a.kv_norm = d_kvn.b(), a.kv_b = d_kvb.b(), a.norm_eps = 1e-6f;
  a.scale = 1.f / std::sqrt(float(nope + rope));
  a.cache = reinterpret_cast<bf16*>(d_cache.p), a.max_tokens = max_tokens;
  a.qa = d_qa.p, a.part_o = d_po.p, a.part_ml = d_pml.p, a.o_lat = d_olat.p, a.splits = splits;
  a.out = reinterpret_cast<bf16*>(d_out.p);
  mla_decode(a, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> out = d_out.get(), cache_after = d_cache.get();
  for (int b = 0; b < B; ++b) {
    const int s = slot_of[b], n = len[s] + 1;
    const float* kv = &proj[b * rows + H * (nope + rope)];
    // The appended row: normed latent, then the rope slice (bf16).
    std::vector<double> row(D);
    double ss = 0;
    for (int r = 0; r < rank; ++r) ss += double(kv[r]) * kv[r];
    for (int r = 0; r < D; ++r)
      row[r] = r < rank ? kv[r] / std::sqrt(ss / rank + 1e-6) * kvn[r] : kv[r];
    for (int r = 0; r < D; ++r) {
      const double got = bf16_val(cache_after[(size_t(s) * max_tokens + len[s]) * D + r]);
      EXPECT_NEAR(got, row[r], 1e-2 * (1 + std::abs(row[r]))) << "appended row, slot " << s;
      cache_f[(size_t(s) * max_tokens + len[s]) * D + r] = static_cast<float>(got);
    }
    for (int h = 0; h < H; ++h) {
      const float* q = &proj[b * rows + h * (nope + rope)];
      std::vector<double> qa(D, 0.0);
      for (int r = 0; r < rank; ++r)
        for (int i = 0; i < nope; ++i)
          qa[r] += q[i] * kvb[(size_t(h) * (nope + vd) + i) * rank + r];
      for (int i = 0; i < rope; ++i) qa[rank + i] = q[nope + i];
      const ktest::Softmax sm =
          ktest::softmax_rows(qa.data(), &cache_f[size_t(s) * max_tokens * D], n, D, a.scale);
      for (int v = 0; v < vd; ++v) {
        double want = 0;
        for (int r = 0; r < rank; ++r) {
          double ol = 0;
          for (int t = 0; t < n; ++t) ol += sm.w[t] * cache_f[(size_t(s) * max_tokens + t) * D + r];
          want += ol * kvb[(size_t(h) * (nope + vd) + nope + v) * rank + r];
        }
        const double got = bf16_val(out[(b * H + h) * vd + v]);
        EXPECT_NEAR(got, want, 2e-2 * (1 + std::abs(want)))
            << "b " << b << " h " << h << " v " << v;
      }
    }
  }
}

}  // namespace
}  // namespace kimi::inference::engine::cuda
