// kimi_cuda_bench's shared pieces (bench_common.h): medians, host random inputs, the chunk
// forward's timer and the copy ceiling.
#include "tests/cuda/bench_common.h"

#include <cstdio>

namespace kimi::cuda_bench {
namespace {

// Fast host random numbers (xorshift64*), uniform in [-1, 1).
struct Rng {
  uint64_t s;
  double next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return double((s * 0x2545F4914F6CDD1DULL) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
  }
};

}  // namespace

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::vector<double> uniform(size_t n, uint64_t seed, double lo, double hi) {
  Rng r{seed * 0x9E3779B97F4A7C15ULL + 1};
  std::vector<double> x(n);
  for (auto& e : x) e = lo + (hi - lo) * 0.5 * (r.next() + 1.0);
  return x;
}

void bench_copy() {
  const size_t n = size_t(1) << 30;  // 1 GiB each way
  kc::Buffer a(n), b(n);
  KIMI_CUDA_CHECK(cudaMemsetAsync(a.get(), 1, n, kc::stream()));
  const double ms = time_ms(2, 10, [&] {
    KIMI_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), n, cudaMemcpyDeviceToDevice, kc::stream()));
  });
  std::printf("device-to-device copy 1 GiB: %.3f ms = %.2f TB/s (read + write)\n", ms,
              2.0 * n / (ms * 1e-3) / 1e12);
}

FwdTimes time_chunk_fwd(ChunkInputs& in, int gi, int64_t seq, int reps) {
  using T = ChunkInputs::T;
  const int64_t H = in.H, K = in.K, V = in.V, B = in.NT / seq;
  RecurrenceDims d{B, seq, H, K, V, gates[gi], 1.0 / std::sqrt(double(K)), 64};
  Dev<float> h0(B * H * K * V), ht(B * H * K * V);
  KIMI_CUDA_CHECK(cudaMemsetAsync(h0.ptr(), 0, h0.size() * 4, kc::stream()));
  Events ev;
  const kc::ChunkFwdEvents ce{ev.a, ev.b, ev.c};
  auto run = [&](const kc::ChunkFwdEvents* e) {
    kc::delta_rule_chunk_fwd<T>(d, in.dq.ptr(), in.dk.ptr(), in.dv.ptr(), in.gate(gi),
                                in.dbeta.ptr(), h0.ptr(), in.o.ptr(), ht.ptr(), kc::stream(), e);
  };
  for (int i = 0; i < 2; ++i) run(nullptr);
  std::vector<double> tot, intra, state;
  for (int i = 0; i < reps; ++i) {
    run(&ce);
    KIMI_CUDA_CHECK(cudaEventSynchronize(ev.c));
    tot.push_back(ev.ms(ev.a, ev.c));
    intra.push_back(ev.ms(ev.a, ev.b));
    state.push_back(ev.ms(ev.b, ev.c));
  }
  return {median(tot), median(intra), median(state)};
}

}  // namespace kimi::cuda_bench
