// Dense and grouped (MoE) GEMV for decode: one warp per weight row, the row streamed once per
// tile of 8 input rows (16-byte loads when every row is 8-element aligned), fp32 accumulation,
// a warp reduction per output. At batch <= 8 every weight byte is read once per step; larger
// batches re-read each row once per 8 inputs, so above 8 rows the engine takes tensor-core
// products instead (cuBLAS, expert_mma.cu) unless KIMI_ENGINE_GEMV=old.
#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

constexpr int kTile = 8;   // input rows per pass over a weight row
constexpr int kWarps = 8;  // weight rows per block

// y[out_r, n] (+)= W[n, :] . x[in_r, :] for the `count` rows of a group; row i of the group is
// list[i] (or i without a list), read from input row list[i] / in_div.
template <class TIn, bool kVec>
__device__ void warp_row(const bf16* __restrict__ w, int K, const TIn* __restrict__ x, int64_t xs,
                         const int* list, int in_div, int count, float* y, int64_t ys, int n,
                         bool accumulate) {
  const int lane = threadIdx.x & 31;
  for (int t0 = 0; t0 < count; t0 += kTile) {
    const int nt = min(kTile, count - t0);
    const TIn* xr[kTile];
    int orow[kTile];
#pragma unroll
    for (int t = 0; t < kTile; ++t) {
      const int i = t0 + min(t, nt - 1);
      const int r = list ? list[i] : i;
      xr[t] = x + static_cast<int64_t>(r / in_div) * xs;
      orow[t] = r;
    }
    float acc[kTile];
#pragma unroll
    for (int t = 0; t < kTile; ++t) acc[t] = 0.f;
    if (kVec) {
#pragma unroll 4
      for (int k = lane * 8; k < K; k += 256) {
        float wf[8], xf[8];
        unpack8(__ldg(reinterpret_cast<const uint4*>(w + k)), wf);
#pragma unroll
        for (int t = 0; t < kTile; ++t) {
          if (t >= nt) break;
          load8(xr[t] + k, xf);
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[t] = fmaf(wf[j], xf[j], acc[t]);
        }
      }
    } else {
      for (int k = lane; k < K; k += 32) {
        const float wf = __bfloat162float(w[k]);
#pragma unroll
        for (int t = 0; t < kTile; ++t) {
          if (t >= nt) break;
          acc[t] = fmaf(wf, to_f(xr[t][k]), acc[t]);
        }
      }
    }
#pragma unroll
    for (int t = 0; t < kTile; ++t) {
      const float v = warp_sum(acc[t]);
      if (lane == 0 && t < nt) {
        float* dst = y + static_cast<int64_t>(orow[t]) * ys + n;
        *dst = accumulate ? *dst + v : v;
      }
    }
  }
}

template <class TIn, bool kVec>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const bf16* W, int N, int K, const TIn* x, int64_t xs, int B, float* y, int64_t ys,
                bool accumulate) {
  const int n = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  warp_row<TIn, kVec>(W + static_cast<int64_t>(n) * K, K, x, xs, nullptr, 1, B, y, ys, n,
                      accumulate);
}

template <bool kVec>
__global__ void __launch_bounds__(kWarps * 32)
    expert_kernel(const bf16* W0, int64_t estride, int N, int K, const bf16* x, int64_t xs,
                  int in_div, MoePlan plan, float* y, int64_t ys) {
  const int g = blockIdx.x;
  if (g >= *plan.n_active) return;
  const int n = blockIdx.y * kWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  const int begin = plan.offsets[g], count = plan.offsets[g + 1] - begin;
  const bf16* w = W0 + static_cast<int64_t>(plan.active[g]) * estride + static_cast<int64_t>(n) * K;
  warp_row<bf16, kVec>(w, K, x, xs, plan.sorted + begin, in_div, count, y, ys, n, false);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

void gemv(const bf16* W, int N, int K, const void* x, bool x_f32, int64_t x_stride, int B, float* y,
          int64_t y_stride, bool accumulate, cudaStream_t s) {
  if (N <= 0 || B <= 0) return;
  const bool vec = K % 8 == 0 && x_stride % 8 == 0 && aligned16(W) && aligned16(x);
  const dim3 grid((N + kWarps - 1) / kWarps);
  if (x_f32) {
    const float* xf = static_cast<const float*>(x);
    if (vec)
      gemv_kernel<float, true>
          <<<grid, kWarps * 32, 0, s>>>(W, N, K, xf, x_stride, B, y, y_stride, accumulate);
    else
      gemv_kernel<float, false>
          <<<grid, kWarps * 32, 0, s>>>(W, N, K, xf, x_stride, B, y, y_stride, accumulate);
  } else {
    const bf16* xb = static_cast<const bf16*>(x);
    if (vec)
      gemv_kernel<bf16, true>
          <<<grid, kWarps * 32, 0, s>>>(W, N, K, xb, x_stride, B, y, y_stride, accumulate);
    else
      gemv_kernel<bf16, false>
          <<<grid, kWarps * 32, 0, s>>>(W, N, K, xb, x_stride, B, y, y_stride, accumulate);
  }
  KIMI_CUDA_CHECK_LAUNCH();
}

void expert_gemv(const bf16* W0, int64_t expert_stride, int N, int K, const bf16* x,
                 int64_t x_stride, int in_div, const MoePlan& plan, int max_groups, float* y,
                 int64_t y_stride, cudaStream_t s) {
  if (N <= 0 || max_groups <= 0) return;
  const bool vec =
      K % 8 == 0 && x_stride % 8 == 0 && expert_stride % 8 == 0 && aligned16(W0) && aligned16(x);
  const dim3 grid(max_groups, (N + kWarps - 1) / kWarps);
  if (vec)
    expert_kernel<true><<<grid, kWarps * 32, 0, s>>>(W0, expert_stride, N, K, x, x_stride, in_div,
                                                     plan, y, y_stride);
  else
    expert_kernel<false><<<grid, kWarps * 32, 0, s>>>(W0, expert_stride, N, K, x, x_stride, in_div,
                                                      plan, y, y_stride);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
