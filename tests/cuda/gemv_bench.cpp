// The decode step's small-batch kernels alone at the 48B model's shapes (issue 10), old against
// new: gemv vs gemv_split per dense product; expert_gemv + swiglu + expert_gemv vs
// expert_gemv_split + expert_swiglu over the chosen experts (the MoE layer's expert part);
// moe_router + moe_topk + moe_plan vs moe_route_fused; moe_combine + rms_norm vs
// moe_combine_norm. Microseconds per call (median of --reps timings of 20 calls back to back)
// and, for the products, TB/s of the weight bytes they must read. The weights cycle over copies
// totalling > 512 MB (the experts over all 256), so none is served from L2.
//   kimi_cuda_gemv_bench [--reps N] [--batch 1,8]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "inference/engine/cuda/engine_kernels.h"
#include "tests/cuda/bench_check.h"

using namespace kimi::inference::engine::cuda;

namespace {

constexpr int kCalls = 20;

// Median over reps of (kCalls calls of f(i), i = call index) / kCalls, in microseconds.
double time_us(const std::function<void(int)>& f, int reps) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < kCalls; ++i) f(i);  // warm-up (first launches, occupancy queries)
  CK(cudaDeviceSynchronize());
  std::vector<double> us;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(e0));
    for (int i = 0; i < kCalls; ++i) f(r * kCalls + i);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    us.push_back(1e3 * ms / kCalls);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

template <class T>
T* alloc(size_t n) {
  T* p = nullptr;
  CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  CK(cudaMemset(p, 0, std::max<size_t>(n, 1) * sizeof(T)));
  return p;
}

struct Dense {
  const char* name;
  int N, K;
  bool x_f32;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 9;
  std::vector<int> batches = {1, 8};
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (s == "--batch" && i + 1 < argc) {
      batches.clear();
      std::stringstream ss(argv[++i]);
      for (std::string t; std::getline(ss, t, ',');) batches.push_back(std::atoi(t.c_str()));
      for (int b : batches)
        if (b < 1 || b > 8) {
          std::fprintf(stderr, "--batch: sizes 1..8 (the GEMV's batches), got %d\n", b);
          return 2;
        }
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--batch 1,8]\n", argv[0]);
      return 2;
    }
  }
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  const int d = 2304, E = 256, top_k = 8, h = 1024;
  const std::vector<Dense> dense = {
      {"kda in (q k v f_a g_a b)", 12576, d, false},
      {"mla in (q kv_a)", 6720, d, false},
      {"o_proj (KDA/MLA)", d, 4096, false},
      {"shared gate_up", 2 * h, d, false},
      {"shared down", d, h, false},
      {"dense mlp gate_up", 18432, d, false},
      {"dense mlp down", d, 9216, false},
      {"f_b / g_b (fp32 x)", 4096, 128, true},
      {"lm_head", 163840, d, false},
  };
  float* x32 = alloc<float>(8 * 18432);
  bf16* xb = alloc<bf16>(8 * 18432);
  float* y = alloc<float>(8 * 163840);
  fill_uniform(xb, false, 8 * 18432, 1.f, 1, nullptr);
  fill_uniform(x32, true, 8 * 18432, 1.f, 2, nullptr);
  std::printf("\n%-26s %3s %10s %10s %9s %9s\n", "dense product", "B", "gemv us", "split us",
              "gemv TB/s", "split TB/s");
  for (const Dense& p : dense) {
    const size_t elems = size_t(p.N) * p.K;
    const int copies = static_cast<int>(std::max<size_t>(1, (size_t{512} << 20) / (2 * elems) + 1));
    bf16* W = alloc<bf16>(elems * copies);
    fill_uniform(W, false, static_cast<int64_t>(elems * copies), 0.05f, 3, nullptr);
    const void* x = p.x_f32 ? static_cast<const void*>(x32) : static_cast<const void*>(xb);
    for (int B : batches) {
      auto run = [&](bool split) {
        return time_us(
            [&](int i) {
              const bf16* w = W + elems * (i % copies);
              if (split)
                gemv_split(w, p.N, p.K, x, p.x_f32, p.K, B, y, p.N, false, nullptr);
              else
                gemv(w, p.N, p.K, x, p.x_f32, p.K, B, y, p.N, false, nullptr);
            },
            reps);
      };
      const double old_us = run(false), new_us = run(true), tb = 2.0 * elems / 1e6;
      std::printf("%-26s %3d %10.1f %10.1f %9.2f %9.2f\n", p.name, B, old_us, new_us, tb / old_us,
                  tb / new_us);
    }
    CK(cudaFree(W));
  }

  // Routed experts: all 256 experts' gate_up [2h, d] and down [d, h]; each call's top-8 sets
  // rotate over them.
  const int64_t stride = int64_t{3} * h * d;
  bf16* EW = alloc<bf16>(static_cast<size_t>(E) * stride);
  fill_uniform(EW, false, E * stride, 0.05f, 4, nullptr);
  const int sets = 32;
  std::printf("\n%-26s %3s %10s %10s %9s %9s\n", "routed experts", "B", "old us", "split us",
              "old TB/s", "split TB/s");
  for (int B : batches) {
    const int S = B * top_k;
    std::mt19937 rng(7);
    std::vector<MoePlan> plans(sets);
    int distinct_sum = 0;
    for (int si = 0; si < sets; ++si) {
      std::vector<int> ids(S);
      std::vector<int> used(E, 0);
      for (int b = 0; b < B; ++b) {
        std::vector<int> e(E);
        std::iota(e.begin(), e.end(), 0);
        std::shuffle(e.begin(), e.end(), rng);
        for (int k = 0; k < top_k; ++k) ids[b * top_k + k] = e[k], used[e[k]] = 1;
      }
      distinct_sum += std::accumulate(used.begin(), used.end(), 0);
      int* dids = alloc<int>(S);
      CK(cudaMemcpy(dids, ids.data(), S * 4, cudaMemcpyHostToDevice));
      plans[si] = {alloc<int>(1), alloc<int>(E), alloc<int>(E + 1), alloc<int>(S)};
      moe_plan(dids, S, E, plans[si], nullptr);
    }
    CK(cudaDeviceSynchronize());
    float* gu = alloc<float>(size_t(S) * 2 * h);
    bf16* act = alloc<bf16>(size_t(S) * h);
    float* yo = alloc<float>(size_t(S) * d);
    const int groups = std::min(E, S);
    auto run = [&](bool split) {
      return time_us(
          [&](int i) {
            const MoePlan& pl = plans[i % sets];
            if (split) {
              expert_gemv_split(EW, stride, 2 * h, d, xb, d, top_k, pl, groups, B, gu, 2 * h,
                                nullptr);
              expert_swiglu(EW + 2 * int64_t{h} * d, stride, d, h, gu, 2 * h, pl, groups, B, yo, d,
                            nullptr);
            } else {
              expert_gemv(EW, stride, 2 * h, d, xb, d, top_k, pl, groups, gu, 2 * h, nullptr);
              swiglu(gu, S, h, act, nullptr);
              expert_gemv(EW + 2 * int64_t{h} * d, stride, d, h, act, h, 1, pl, groups, yo, d,
                          nullptr);
            }
          },
          reps);
    };
    const double old_us = run(false), new_us = run(true);
    const double tb = 2.0 * stride * (double(distinct_sum) / sets) / 1e6;
    std::printf("%-26s %3d %10.1f %10.1f %9.2f %9.2f   (%.1f experts a step on average)\n",
                "gate_up, swiglu, down", B, old_us, new_us, tb / old_us, tb / new_us,
                double(distinct_sum) / sets);
    CK(cudaFree(gu));
    CK(cudaFree(act));
    CK(cudaFree(yo));
  }
  CK(cudaFree(EW));

  // Routing and the combine + norm (microseconds only: launch- and latency-bound).
  float* router = alloc<float>(size_t(E) * d);
  float* bias = alloc<float>(E);
  fill_uniform(router, true, int64_t{E} * d, 0.05f, 5, nullptr);
  fill_uniform(bias, true, E, 0.01f, 6, nullptr);
  float* scores = alloc<float>(8 * E);
  int* ids = alloc<int>(8 * top_k);
  float* wts = alloc<float>(8 * top_k);
  unsigned* ticket = alloc<unsigned>(1);
  const MoePlan plan{alloc<int>(1), alloc<int>(E), alloc<int>(E + 1), alloc<int>(8 * top_k)};
  float* hbuf = alloc<float>(8 * d);
  float* ybuf = alloc<float>(8 * top_k * d);
  bf16* nw = alloc<bf16>(d);
  fill_uniform(nw, false, d, 1.f, 7, nullptr);
  std::printf("\n%-26s %3s %10s %10s\n", "small kernels", "B", "old us", "new us");
  for (int B : batches) {
    const double r_old = time_us(
        [&](int) {
          moe_router(x32, router, B, d, E, scores, nullptr);
          moe_topk(scores, bias, B, E, top_k, true, 2.446f, ids, wts, nullptr);
          moe_plan(ids, B * top_k, E, plan, nullptr);
        },
        reps);
    const double r_new = time_us(
        [&](int) {
          moe_route_fused(x32, router, bias, B, d, E, top_k, true, 2.446f, scores, ids, wts, plan,
                          ticket, nullptr);
        },
        reps);
    std::printf("%-26s %3d %10.1f %10.1f\n", "routing (3 kernels / 1)", B, r_old, r_new);
    const double c_old = time_us(
        [&](int) {
          moe_combine(ybuf, wts, B, top_k, d, hbuf, nullptr);
          rms_norm(hbuf, d, nw, B, d, 1e-6f, xb, nullptr, nullptr);
        },
        reps);
    const double c_new = time_us(
        [&](int) { moe_combine_norm(ybuf, wts, B, top_k, d, hbuf, nw, 1e-6f, xb, nullptr); }, reps);
    std::printf("%-26s %3d %10.1f %10.1f\n", "combine + norm (2 / 1)", B, c_old, c_new);
  }
  CK(cudaDeviceSynchronize());
  std::printf("\n(per call, %d calls back to back without a graph: launch gaps included)\n",
              kCalls);
  return 0;
}
