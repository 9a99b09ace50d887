// CUDA benchmark (kimi_cuda_bench): the chunkwise KDA forward (and forward + backward, with the
// backward's stages) at bf16, H=16, K=V=128,
// B*T = 65,536 tokens, T = 2048 / 8192 / 32768, and the KDA decode step (H=32, K=V=128, fp32
// state in place) at B = 1 / 64 / 256. No peer figure is printed here: tools/peer_bench.py times
// flash-linear-attention and PyTorch beside `kimi-lab bench` in one run. Timing: CUDA events
// around each call after warm-up, the median of the repeats. Also measures the device-to-device
// copy ceiling first. Also the chunkwise gated linear recurrence (bench_linear, first).
// Usage: kimi_cuda_bench [--reps N] [--profile] [--linear] [--state] [--bwd-state] [--bwd-wy]
// [--intra]
// (--intra: the KDA intra kernels old and new with forward totals, bench_intra; --profile:
// only the chunk forward at T = 8192, three calls, for ncu; --linear: only the linear recurrence
// rows; --state: only the forward's state kernels side by side, bench_state; --bwd-state: the
// chunk backward's stages with its F2 and B1 walks old and new, bench_bwd_state; --bwd-wy: the
// same stages with B3 / B4 on WMMA TF32 (old) or bf16 mma.sync (new), bench_bwd_wy_gram)

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "tests/cuda/bench_common.h"

using namespace kimi::cuda_bench;

int main(int argc, char** argv) {
  int reps = 10;
  bool profile = false, linear_only = false, state_only = false, bwd_state_only = false,
       intra_only = false, bwd_wy_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--profile") == 0) profile = true;
    if (std::strcmp(argv[i], "--linear") == 0) linear_only = true;
    if (std::strcmp(argv[i], "--state") == 0) state_only = true;
    if (std::strcmp(argv[i], "--bwd-state") == 0) bwd_state_only = true;
    if (std::strcmp(argv[i], "--intra") == 0) intra_only = true;
    if (std::strcmp(argv[i], "--bwd-wy") == 0) bwd_wy_only = true;
  }
  if (!kc::device_present()) {
    std::printf("SKIP: no CUDA device present\n");
    return 0;
  }
  try {
    cudaDeviceProp prop{};
    KIMI_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs, %.0f MB L2\n", prop.name, prop.multiProcessorCount,
                prop.l2CacheSize / 1e6);
    if (profile) {
      bench_chunk(1, true);
      return 0;
    }
    if (state_only) {
      bench_state(reps);
      return 0;
    }
    if (bwd_state_only) {
      bench_bwd_state(reps);
      return 0;
    }
    if (intra_only) {
      bench_intra(reps);
      return 0;
    }
    if (bwd_wy_only) {
      bench_bwd_wy_gram(reps);
      return 0;
    }
    bench_linear(reps);
    if (linear_only) return 0;
    bench_copy();
    bench_decode(reps);
    bench_chunk(reps, false);
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  return 0;
}
