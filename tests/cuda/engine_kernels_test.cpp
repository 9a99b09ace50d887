// The decode engine's kernels one by one against host references (part of kimi_cuda_engine_test):
// the GEMV on aligned and odd widths (its 16-byte and scalar paths) and batch sizes across the
// 8-row tile, the grouped expert GEMV through the MoE plan, the device routing against
// models::route_tokens, and the tensor-core grouped product (expert_mma) against the host and the
// GEMV on aligned and odd widths, slot counts across its 64-slot tile. Skips without a GPU.
#include "inference/engine/cuda/engine_kernels.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "models/moe.h"

namespace kimi::inference::engine::cuda {
namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define GPU_OR_SKIP() \
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";

uint16_t to_bf16_bits(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf16_bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <class T>
T* upload(const std::vector<T>& v) {
  T* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return p;
}
template <class T>
std::vector<T> download(const T* p, size_t n) {
  std::vector<T> v(n);
  EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

// bf16-rounded random values: bits for the device, floats for the reference.
struct Bf16Data {
  std::vector<uint16_t> bits;
  std::vector<float> vals;
};
Bf16Data random_bf16(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  Bf16Data d;
  for (size_t i = 0; i < n; ++i) {
    d.bits.push_back(to_bf16_bits(nd(rng)));
    d.vals.push_back(from_bf16_bits(d.bits.back()));
  }
  return d;
}

TEST(EngineKernels, GemvMatchesHostOnAlignedAndOddWidths) {
  GPU_OR_SKIP();
  std::mt19937 rng(5);
  for (int K : {64, 60, 264}) {
    for (int B : {1, 7, 8, 19}) {
      const int N = 37;
      const Bf16Data w = random_bf16(static_cast<size_t>(N) * K, rng), x = random_bf16(B * K, rng);
      std::vector<float> y0(B * N, 0.5f);
      auto* dw = upload(w.bits);
      auto* dx = upload(x.bits);
      float* dy = upload(y0);
      gemv(reinterpret_cast<const bf16*>(dw), N, K, dx, false, K, B, dy, N, true, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> y = download(dy, y0.size());
      double worst = 0;
      for (int b = 0; b < B; ++b)
        for (int n = 0; n < N; ++n) {
          double ref = 0.5;
          for (int k = 0; k < K; ++k) ref += double(w.vals[n * K + k]) * x.vals[b * K + k];
          worst = std::max(worst, std::abs(ref - y[b * N + n]) / (1 + std::abs(ref)));
        }
      EXPECT_LT(worst, 1e-4) << "K " << K << " B " << B;
      cudaFree(dw), cudaFree(dx), cudaFree(dy);
    }
  }
}

TEST(EngineKernels, RoutingAndExpertGemvMatchTheHostRule) {
  GPU_OR_SKIP();
  std::mt19937 rng(9);
  const int N = 11, E = 13, top_k = 4, d = 40, h = 24;
  models::MoeOptions opt;
  opt.num_experts = E, opt.top_k = top_k, opt.routed_scaling_factor = 2.446;
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> scores(N * E), bias(E);
  for (float& s : scores) s = u(rng);
  for (float& b : bias) b = 0.1f * (u(rng) - 0.5f);
  const models::Routing want =
      models::route_tokens(std::vector<double>(scores.begin(), scores.end()),
                           std::vector<double>(bias.begin(), bias.end()), N, opt);
  float *ds = upload(scores), *db = upload(bias);
  int* ids = upload(std::vector<int>(N * top_k));
  float* wts = upload(std::vector<float>(N * top_k));
  moe_topk(ds, db, N, E, top_k, true, 2.446f, ids, wts, nullptr);
  MoePlan plan{upload(std::vector<int>(1)), upload(std::vector<int>(E)),
               upload(std::vector<int>(E + 1)), upload(std::vector<int>(N * top_k))};
  moe_plan(ids, N * top_k, E, plan, nullptr);
  // Experts: W_e [h, d]; y[s] = W_{e(s)} x[s / top_k].
  const Bf16Data w = random_bf16(static_cast<size_t>(E) * h * d, rng), x = random_bf16(N * d, rng);
  auto* dw = upload(w.bits);
  auto* dx = upload(x.bits);
  float* dy = upload(std::vector<float>(N * top_k * h));
  expert_gemv(reinterpret_cast<const bf16*>(dw), int64_t{h} * d, h, d,
              reinterpret_cast<const bf16*>(dx), d, top_k, plan, std::min(E, N * top_k), dy, h,
              nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<int> got_ids = download(ids, N * top_k);
  const std::vector<float> got_w = download(wts, N * top_k), y = download(dy, N * top_k * h);
  for (int i = 0; i < N * top_k; ++i) {
    EXPECT_EQ(got_ids[i], want.expert[i]) << i;
    EXPECT_NEAR(got_w[i], want.weight[i], 1e-5) << i;
    const int e = got_ids[i], tok = i / top_k;
    for (int r = 0; r < h; ++r) {
      double ref = 0;
      for (int k = 0; k < d; ++k) ref += double(w.vals[(e * h + r) * d + k]) * x.vals[tok * d + k];
      EXPECT_NEAR(y[i * h + r], ref, 1e-4 * (1 + std::abs(ref))) << "slot " << i << " row " << r;
    }
  }
  for (void* p :
       {(void*)ds, (void*)db, (void*)ids, (void*)wts, (void*)dw, (void*)dx, (void*)dy,
        (void*)plan.n_active, (void*)plan.active, (void*)plan.offsets, (void*)plan.sorted})
    cudaFree(p);
}

// expert_mma against the host sums and expert_gemv (its oracle), both with the same plan: widths
// K aligned (16-byte loads) and odd (element loads), K past one 64-column stage and with a tail,
// N below and across the 64-row block; per-expert slot counts from 1 past the 64-slot tile (few
// experts, many tokens); inputs per token (in_div = top_k, gate_up) and per slot (down).
TEST(EngineKernels, ExpertMmaMatchesTheHostAndTheGemv) {
  GPU_OR_SKIP();
  std::mt19937 rng(21);
  struct Case {
    int K, N, E, top_k, tokens, in_div;
  };
  const std::vector<Case> cases = {
      {64, 48, 6, 3, 1, 3},    {40, 24, 6, 3, 9, 3},    {60, 18, 6, 3, 17, 1},
      {136, 130, 5, 2, 64, 2}, {100, 70, 3, 2, 100, 1}, {264, 64, 4, 1, 65, 1},
      {72, 65, 2, 2, 200, 2},  {18, 60, 6, 3, 9, 1},
  };
  for (const Case& c : cases) {
    const int S = c.tokens * c.top_k, rows = c.in_div == 1 ? S : c.tokens;
    // Each token picks top_k distinct experts at random.
    std::vector<int> ids(S);
    for (int t = 0; t < c.tokens; ++t) {
      std::vector<int> e(c.E);
      for (int i = 0; i < c.E; ++i) e[i] = i;
      std::shuffle(e.begin(), e.end(), rng);
      for (int k = 0; k < c.top_k; ++k) ids[t * c.top_k + k] = e[k];
    }
    int* dids = upload(ids);
    MoePlan plan{upload(std::vector<int>(1)), upload(std::vector<int>(c.E)),
                 upload(std::vector<int>(c.E + 1)), upload(std::vector<int>(S))};
    moe_plan(dids, S, c.E, plan, nullptr);
    const Bf16Data w = random_bf16(static_cast<size_t>(c.E) * c.N * c.K, rng);
    const Bf16Data x = random_bf16(static_cast<size_t>(rows) * c.K, rng);
    auto* dw = upload(w.bits);
    auto* dx = upload(x.bits);
    float* dy = upload(std::vector<float>(static_cast<size_t>(S) * c.N, -7.f));
    float* dg = upload(std::vector<float>(static_cast<size_t>(S) * c.N, -7.f));
    const auto* W = reinterpret_cast<const bf16*>(dw);
    const auto* X = reinterpret_cast<const bf16*>(dx);
    const int groups = std::min(c.E, S);
    expert_mma(W, int64_t{c.N} * c.K, c.N, c.K, X, c.K, c.in_div, plan, groups, dy, c.N, nullptr);
    expert_gemv(W, int64_t{c.N} * c.K, c.N, c.K, X, c.K, c.in_div, plan, groups, dg, c.N, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> y = download(dy, static_cast<size_t>(S) * c.N);
    const std::vector<float> g = download(dg, static_cast<size_t>(S) * c.N);
    double worst = 0, worst_gemv = 0;
    for (int i = 0; i < S; ++i)
      for (int n = 0; n < c.N; ++n) {
        const int e = ids[i], r = i / c.in_div;
        double ref = 0;
        for (int k = 0; k < c.K; ++k)
          ref += double(w.vals[(static_cast<size_t>(e) * c.N + n) * c.K + k]) *
                 x.vals[static_cast<size_t>(r) * c.K + k];
        const float got = y[static_cast<size_t>(i) * c.N + n];
        worst = std::max(worst, std::abs(ref - got) / (1 + std::abs(ref)));
        worst_gemv =
            std::max(worst_gemv, std::abs(double(g[static_cast<size_t>(i) * c.N + n]) - got) /
                                     (1 + std::abs(ref)));
      }
    EXPECT_LT(worst, 1e-4) << "K " << c.K << " N " << c.N << " tokens " << c.tokens;
    EXPECT_LT(worst_gemv, 1e-4) << "K " << c.K << " N " << c.N << " tokens " << c.tokens;
    for (void* p : {(void*)dids, (void*)dw, (void*)dx, (void*)dy, (void*)dg, (void*)plan.n_active,
                    (void*)plan.active, (void*)plan.offsets, (void*)plan.sorted})
      cudaFree(p);
  }
}

}  // namespace
}  // namespace kimi::inference::engine::cuda
