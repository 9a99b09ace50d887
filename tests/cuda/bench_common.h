// The shared pieces of kimi_cuda_bench (cuda_bench.cpp): CUDA-event timing with medians, host
// random inputs, the chunk benchmarks' bf16 inputs (H=16, K=V=128, B*T = 65,536 tokens) and the
// chunk forward's timer; each bench_* function prints one table (the files bench_chunk_fwd.cpp,
// bench_chunk_bwd.cpp and bench_linear_decode.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/cuda/delta_rule/delta_rule.cuh"
#include "tests/cuda/cuda_common.h"

namespace kimi::cuda_bench {

using namespace kimi::cuda_test;
namespace kc = kimi::cuda;

struct Events {
  cudaEvent_t a, b, c;
  Events() {
    KIMI_CUDA_CHECK(cudaEventCreate(&a));
    KIMI_CUDA_CHECK(cudaEventCreate(&b));
    KIMI_CUDA_CHECK(cudaEventCreate(&c));
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaEventDestroy(c);
  }
  float ms(cudaEvent_t x, cudaEvent_t y) const {
    float m = 0;
    KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, x, y));
    return m;
  }
};

double median(std::vector<double> v);

// Times f() `reps` times after `warm` calls; returns the median in ms.
template <class F>
double time_ms(int warm, int reps, F&& f) {
  Events ev;
  for (int i = 0; i < warm; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    KIMI_CUDA_CHECK(cudaEventRecord(ev.a, kc::stream()));
    f();
    KIMI_CUDA_CHECK(cudaEventRecord(ev.b, kc::stream()));
    KIMI_CUDA_CHECK(cudaEventSynchronize(ev.b));
    t.push_back(ev.ms(ev.a, ev.b));
  }
  return median(t);
}

// Host random numbers, uniform in [lo, hi) (xorshift64*, seeded).
std::vector<double> uniform(size_t n, uint64_t seed, double lo, double hi);

// The chunk benchmarks' inputs, bf16, H=16, K=V=128, B*T = 65,536 tokens: the same buffers
// serve every T. k is L2-normalised per (token, head).
struct ChunkInputs {
  using T = __nv_bfloat16;
  static constexpr int64_t H = 16, K = 128, V = 128, NT = 65536;
  Dev<T> dq, dk, dv, dg, dbeta, o, dgs;
  ChunkInputs()
      : dq(uniform(NT * H * K, 1, -1, 1)),
        dk(normalised_k()),
        dv(uniform(NT * H * V, 3, -1, 1)),
        dg(uniform(NT * H * K, 4, -0.2, -0.001)),
        dbeta(uniform(NT * H, 5, 0.05, 0.95)),
        o(NT * H * V),
        dgs(uniform(NT * H, 7, -0.2, -0.001)) {}  // GDN's scalar gate; DeltaNet has none
  static std::vector<double> normalised_k() {
    std::vector<double> k = uniform(NT * H * K, 2, -1, 1);
    for (int64_t r = 0; r < NT * H; ++r) {
      double s = 0;
      for (int64_t i = 0; i < K; ++i) s += k[r * K + i] * k[r * K + i];
      for (int64_t i = 0; i < K; ++i) k[r * K + i] /= std::sqrt(s);
    }
    return k;
  }
  const T* gate(int gi) const { return gi == 0 ? dg.ptr() : gi == 1 ? dgs.ptr() : nullptr; }
};
inline const GateKind gates[3] = {GateKind::kPerChannel, GateKind::kScalar, GateKind::kNone};
inline const char* const gate_names[3] = {"kda", "gdn", "delta"};

// The chunk forward of gate gi at sequence length seq, `reps` times after two warm-up calls:
// medians of (total, intra, state) ms from the events around its two kernels.
struct FwdTimes {
  double total, intra, state;
};
FwdTimes time_chunk_fwd(ChunkInputs& in, int gi, int64_t seq, int reps);

// The tables, each its own --flag (cuda_bench.cpp's usage line).
void bench_copy();
void bench_state(int reps);
void bench_intra(int reps);
void bench_chunk(int reps, bool profile);
void bench_bwd_state(int reps);
void bench_bwd_wy_gram(int reps);
void bench_linear(int reps);
void bench_decode(int reps);

}  // namespace kimi::cuda_bench
