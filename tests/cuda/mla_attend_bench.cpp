// The MLA decode attention alone (mla_attend: attend + merge) at the 48B model's shape (32 heads,
// rank 512, rope 64), fp32 kernel vs tensor-core kernel: ms per call (median of --reps after
// --warmup) and the effective bandwidth against the cache bytes it must read (B x context x
// 576 x 2 bytes; the queries, partial outputs and merge are not counted). Splits as the
// engine picks them (inference/engine/mla_splits.h: 1 x SMs / B up to B=4, else 2 x, at most
// one per 32 rows), and for the tensor kernel also 1x and 4x SMs / B. Synthetic uniform caches (no
// NaN: every row is attended).
//   kimi_cuda_mla_bench [--reps N] [--warmup N] [--quick]   (--quick: B=1 4K and B=64 4K only)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "inference/engine/cuda/engine_kernels.h"
#include "inference/engine/mla_splits.h"
#include "tests/cuda/bench_check.h"

using namespace kimi::inference::engine::cuda;

namespace {

// per_sm 0: the engine's rule for this batch.
int engine_splits(int sms, int B, int64_t max_tokens, int per_sm) {
  const int n = per_sm > 0 ? per_sm : kimi::inference::engine::mla_splits_per_sm(B, 0);
  return static_cast<int>(kimi::inference::engine::mla_attend_splits(sms, n, B, max_tokens));
}

float time_ms(const MlaStep& a, MlaKernel k, int warmup, int reps) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < warmup; ++i) mla_attend(a, k, nullptr);
  CK(cudaDeviceSynchronize());
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(e0));
    mla_attend(a, k, nullptr);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float t = 0;
    CK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 10, warmup = 3;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--reps" && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (s == "--warmup" && i + 1 < argc)
      warmup = std::atoi(argv[++i]);
    else if (s == "--quick")
      quick = true;
    else {
      std::fprintf(stderr, "usage: %s [--reps N] [--warmup N] [--quick]\n", argv[0]);
      return 2;
    }
  }
  int dev = 0, sms = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, dev));
  const int H = 32, R = 512, rope = 64, D = R + rope;
  std::printf("MLA attend (+ merge), H=%d rank %d rope %d, %s, %d SMs; median of %d\n", H, R, rope,
              prop.name, sms, reps);
  std::printf("%5s %8s %7s %9s | %10s %8s | %10s %8s | %7s | tensor ms at 1x / 4x SMs splits\n",
              "B", "context", "splits", "cache MB", "fp32 ms", "GB/s", "tensor ms", "GB/s",
              "speedup");
  struct Case {
    int B;
    int64_t ctx;
  };
  std::vector<Case> cases = {{1, 4096}, {1, 131072}, {1, 1048576}, {64, 4096}, {64, 32768}};
  if (quick) cases = {{1, 4096}, {64, 4096}};
  for (const Case& c : cases) {
    const int64_t rows = c.B * c.ctx;
    const int64_t bytes = rows * D * 2;
    const int max_splits = 4 * sms + c.B;
    bf16* cache = nullptr;
    float *qa = nullptr, *po = nullptr, *pml = nullptr, *olat = nullptr;
    int *slots = nullptr, *lengths = nullptr;
    CK(cudaMalloc(&cache, bytes));
    CK(cudaMalloc(&qa, int64_t{c.B} * H * D * 4));
    CK(cudaMalloc(&po, int64_t{max_splits} * H * R * 4));
    CK(cudaMalloc(&pml, int64_t{max_splits} * H * 2 * 4));
    CK(cudaMalloc(&olat, int64_t{c.B} * H * R * 4));
    CK(cudaMalloc(&slots, c.B * 4));
    CK(cudaMalloc(&lengths, c.B * 4));
    fill_uniform(cache, false, rows * D, 1.f, 7, nullptr);
    fill_uniform(qa, true, int64_t{c.B} * H * D, 0.1f, 8, nullptr);
    std::vector<int> ids(c.B);
    for (int b = 0; b < c.B; ++b) ids[b] = b;
    CK(cudaMemcpy(slots, ids.data(), c.B * 4, cudaMemcpyHostToDevice));
    set_lengths(lengths, c.B, static_cast<int>(c.ctx - 1), nullptr);  // + this step = ctx rows
    MlaStep a{};
    a.B = c.B, a.H = H, a.rope = rope, a.rank = R;
    a.slots = slots, a.lengths = lengths, a.cache = cache, a.max_tokens = c.ctx;
    a.qa = qa, a.part_o = po, a.part_ml = pml, a.o_lat = olat;
    a.splits = engine_splits(sms, c.B, c.ctx, 0);
    // The fp32 kernel takes ~23 ms per call at 1M: fewer repetitions there.
    const int old_reps = rows > (int64_t{1} << 22) ? std::max(3, reps / 3) : reps;
    const float t_old = time_ms(a, MlaKernel::kOld, 1, old_reps);
    const float t_tc = time_ms(a, MlaKernel::kTensorCore, warmup, reps);
    const int splits = a.splits;
    a.splits = engine_splits(sms, c.B, c.ctx, 1);
    const float t_tc1 = time_ms(a, MlaKernel::kTensorCore, warmup, reps);
    a.splits = engine_splits(sms, c.B, c.ctx, 4);
    const float t_tc4 = time_ms(a, MlaKernel::kTensorCore, warmup, reps);
    CK(cudaGetLastError());
    std::printf("%5d %7lldK %7d %9.1f | %10.3f %8.0f | %10.3f %8.0f | %6.1fx | %.3f / %.3f\n", c.B,
                static_cast<long long>(c.ctx / 1024), splits, bytes / 1e6, t_old,
                bytes / (t_old * 1e6), t_tc, bytes / (t_tc * 1e6), t_old / t_tc, t_tc1, t_tc4);
    std::fflush(stdout);
    for (void* p : {(void*)cache, (void*)qa, (void*)po, (void*)pml, (void*)olat, (void*)slots,
                    (void*)lengths})
      CK(cudaFree(p));
  }
  return 0;
}
