// The decode GEMV that streams the weights at the copy rate (issue 10): the old one (gemv.cu)
// gives each weight row to one warp, which at K = 2304 is 9 dependent 16-byte loads per lane and
// 288-576 blocks for the 2304-row products: too few bytes in flight to cover HBM latency.
// Here a block of 8 warps takes RB rows per warp group, and the kw warps of a group split K
// (split-K inside the block, summed through shared memory: no atomics, no zeroing pass), so
// each lane has 2 * RB independent 16-byte weight loads in flight (two K steps) and every
// loaded x chunk serves RB rows. The grid is the resident block count (persistent blocks walk
// the row tiles), so every SM is busy to the last tile; the routed experts are one launch over
// (chosen expert, row tile) pairs. Same arguments and results as gemv / expert_gemv, up to the
// order of the fp32 sums.
#include <algorithm>
#include <type_traits>

#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

constexpr int kWarps = 8;

// Input loads. kGate: the row holds [gate (K) | up (K)] in fp32 and the input is SwiGLU's
// bf16(silu(gate) * up), as swiglu() would have written it (the act buffer and its launch saved).
__device__ __forceinline__ float gated(float g, float u) {
  return __bfloat162float(__float2bfloat16(silu_f(g) * u));
}
template <bool kGate, class TIn>
__device__ __forceinline__ void load_x8(const TIn* p, int K, float* f) {
  load8(p, f);
  if constexpr (kGate) {
    float u[8];
    load8(p + K, u);
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] = gated(f[j], u[j]);
  }
}
template <bool kGate, class TIn>
__device__ __forceinline__ float load_x1(const TIn* p, int K) {
  if constexpr (kGate)
    return gated(to_f(p[0]), to_f(p[K]));
  else
    return to_f(p[0]);
}

// One block's tile: rows [n_base, n_base + (8 / kw) * RB) of W (rows past N are clamped for the
// loads and not stored), for the `count` input rows of the group (row i = list[i] or i, read
// from x row list[i] / in_div), NB input rows per pass. Every thread of the block must call it
// (it synchronises).
template <class TIn, int RB, int NB, bool kVec, bool kGate>
__device__ void block_tile(const bf16* __restrict__ W, int N, int K, int kw, int n_base,
                           const TIn* __restrict__ x, int64_t xs, const int* __restrict__ list,
                           int in_div, int count, float* __restrict__ y, int64_t ys,
                           bool accumulate, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = warp / kw, gw = warp % kw, groups = kWarps / kw;
  const bf16* wr[RB];
#pragma unroll
  for (int r = 0; r < RB; ++r)
    wr[r] = W + static_cast<int64_t>(min(n_base + g * RB + r, N - 1)) * K;
  for (int t0 = 0; t0 < count; t0 += NB) {
    const int nt = min(NB, count - t0);
    const TIn* xr[NB];
#pragma unroll
    for (int t = 0; t < NB; ++t) {
      const int i = t0 + min(t, nt - 1);
      xr[t] = x + static_cast<int64_t>((list ? list[i] : i) / in_div) * xs;
    }
    float acc[RB][NB];
#pragma unroll
    for (int r = 0; r < RB; ++r)
#pragma unroll
      for (int t = 0; t < NB; ++t) acc[r][t] = 0.f;
    if (kVec) {
      // Two K steps' weight loads (2 * RB per lane) issued before either is used.
      auto use = [&](const uint4* wv, int k) {
        float wf[RB][8];
#pragma unroll
        for (int r = 0; r < RB; ++r) unpack8(wv[r], wf[r]);
#pragma unroll
        for (int t = 0; t < NB; ++t) {
          if (t >= nt) break;
          float xf[8];
          load_x8<kGate>(xr[t] + k, K, xf);
#pragma unroll
          for (int r = 0; r < RB; ++r)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[r][t] = fmaf(wf[r][j], xf[j], acc[r][t]);
        }
      };
      const int step = kw * 256;
      int k = (gw * 32 + lane) * 8;
      for (; k + step < K; k += 2 * step) {
        uint4 w0[RB], w1[RB];
#pragma unroll
        for (int r = 0; r < RB; ++r) {
          w0[r] = __ldg(reinterpret_cast<const uint4*>(wr[r] + k));
          w1[r] = __ldg(reinterpret_cast<const uint4*>(wr[r] + k + step));
        }
        use(w0, k);
        use(w1, k + step);
      }
      if (k < K) {
        uint4 w0[RB];
#pragma unroll
        for (int r = 0; r < RB; ++r) w0[r] = __ldg(reinterpret_cast<const uint4*>(wr[r] + k));
        use(w0, k);
      }
    } else {
      for (int k = gw * 32 + lane; k < K; k += kw * 32) {
        float wf[RB];
#pragma unroll
        for (int r = 0; r < RB; ++r) wf[r] = __bfloat162float(wr[r][k]);
#pragma unroll
        for (int t = 0; t < NB; ++t) {
          if (t >= nt) break;
          const float xv = load_x1<kGate>(xr[t] + k, K);
#pragma unroll
          for (int r = 0; r < RB; ++r) acc[r][t] = fmaf(wf[r], xv, acc[r][t]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < RB; ++r)
#pragma unroll
      for (int t = 0; t < NB; ++t) {
        if (t >= nt) break;
        const float v = warp_sum(acc[r][t]);
        if (lane == 0) red[warp * RB * NB + r * NB + t] = v;
      }
    __syncthreads();
    for (int i = threadIdx.x; i < groups * RB * NB; i += blockDim.x) {
      const int gi = i / (RB * NB), rt = i % (RB * NB), r = rt / NB, t = rt % NB;
      const int n = n_base + gi * RB + r;
      if (t < nt && n < N) {
        float v = 0.f;
        for (int q = 0; q < kw; ++q) v += red[(gi * kw + q) * RB * NB + rt];
        const int row = list ? list[t0 + t] : t0 + t;
        float* dst = y + static_cast<int64_t>(row) * ys + n;
        *dst = accumulate ? *dst + v : v;
      }
    }
    __syncthreads();  // red is rewritten by the next pass
  }
}

template <class TIn, int RB, int NB, bool kVec, bool kGate>
__global__ void __launch_bounds__(kWarps * 32)
    dense_kernel(const bf16* W, int N, int K, int kw, const TIn* x, int64_t xs, int B, float* y,
                 int64_t ys, bool accumulate) {
  __shared__ float red[kWarps * RB * NB];
  const int rows = kWarps / kw * RB, tiles = (N + rows - 1) / rows;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x)
    block_tile<TIn, RB, NB, kVec, kGate>(W, N, K, kw, tile * rows, x, xs, nullptr, 1, B, y, ys,
                                         accumulate, red);
}

// Work item idx = (active expert, row tile), expert-major: items past the active experts are
// the last ones, so a block stops at the first of them.
template <class TIn, int RB, int NB, bool kVec, bool kGate>
__global__ void __launch_bounds__(kWarps * 32)
    expert_kernel(const bf16* W0, int64_t estride, int N, int K, int kw, const TIn* x, int64_t xs,
                  int in_div, MoePlan plan, int max_groups, float* y, int64_t ys) {
  __shared__ float red[kWarps * RB * NB];
  const int rows = kWarps / kw * RB, tiles = (N + rows - 1) / rows, active = *plan.n_active;
  for (int idx = blockIdx.x; idx < max_groups * tiles; idx += gridDim.x) {
    const int g = idx / tiles, tile = idx % tiles;
    if (g >= active) break;
    const int begin = plan.offsets[g], count = plan.offsets[g + 1] - begin;
    block_tile<TIn, RB, NB, kVec, kGate>(W0 + static_cast<int64_t>(plan.active[g]) * estride, N, K,
                                         kw, tile * rows, x, xs, plan.sorted + begin, in_div, count,
                                         y, ys, false, red);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

int device_sms() {
  static const int sms = [] {
    int dev = 0, n = 0;
    KIMI_CUDA_CHECK(cudaGetDevice(&dev));
    KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return std::max(n, 1);
  }();
  return sms;
}

// Resident blocks of `kernel` on the whole device (the callers keep it per instantiation).
template <class F>
int resident_blocks(F kernel) {
  int per_sm = 0;
  KIMI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, 0));
  return std::max(per_sm, 1) * device_sms();
}

// Warps per row group: as many as the K chunks of 256 elements (a warp's 16-byte sweep) fill,
// up to the 8 of the block.
int warps_along_k(int K) {
  const int chunks = (K + 255) / 256;
  int kw = 1;
  while (kw < kWarps && kw * 2 <= chunks) kw *= 2;
  return kw;
}

// Rows per warp group: 4 where the tiles still fill every resident block several times over
// (fewer reductions, more loads in flight per lane), else fewer, so the last wave is short.
int rows_per_group(int64_t row_sets, int N, int groups) {
  const int64_t cap = int64_t{4} * device_sms();  // ~4 resident blocks per SM
  auto tiles = [&](int rb) { return row_sets * ((N + groups * rb - 1) / (groups * rb)); };
  if (tiles(4) >= 4 * cap) return 4;
  if (tiles(2) >= 2 * cap) return 2;
  return 1;
}

template <class TIn, int RB, int NB, bool kVec, bool kGate>
void launch_dense(const bf16* W, int N, int K, int kw, const TIn* x, int64_t xs, int B, float* y,
                  int64_t ys, bool accumulate, cudaStream_t s) {
  auto kernel = dense_kernel<TIn, RB, NB, kVec, kGate>;
  const int rows = kWarps / kw * RB, tiles = (N + rows - 1) / rows;
  static const int resident = resident_blocks(kernel);
  const int grid = std::min(tiles, resident);
  kernel<<<grid, kWarps * 32, 0, s>>>(W, N, K, kw, x, xs, B, y, ys, accumulate);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <class TIn, int RB, int NB, bool kVec, bool kGate>
void launch_expert(const bf16* W0, int64_t estride, int N, int K, int kw, const TIn* x, int64_t xs,
                   int in_div, const MoePlan& plan, int max_groups, float* y, int64_t ys,
                   cudaStream_t s) {
  auto kernel = expert_kernel<TIn, RB, NB, kVec, kGate>;
  const int rows = kWarps / kw * RB, tiles = (N + rows - 1) / rows;
  const int64_t items = int64_t{max_groups} * tiles;
  static const int resident = resident_blocks(kernel);
  const int grid = static_cast<int>(std::min<int64_t>(items, resident));
  kernel<<<grid, kWarps * 32, 0, s>>>(W0, estride, N, K, kw, x, xs, in_div, plan, max_groups, y,
                                      ys);
  KIMI_CUDA_CHECK_LAUNCH();
}

// The template arguments from the runtime choices: RB (1, 2, 4), NB (1 for one input row per
// group, else 8), the 16-byte path.
template <class F>
void dispatch(int rb, bool one_row, bool vec, F&& f) {
  auto nb = [&](auto rbc) {
    constexpr int R = decltype(rbc)::value;
    if (one_row) {
      if (vec)
        f(std::integral_constant<int, R>{}, std::integral_constant<int, 1>{}, std::true_type{});
      else
        f(std::integral_constant<int, R>{}, std::integral_constant<int, 1>{}, std::false_type{});
    } else {
      if (vec)
        f(std::integral_constant<int, R>{}, std::integral_constant<int, 8>{}, std::true_type{});
      else
        f(std::integral_constant<int, R>{}, std::integral_constant<int, 8>{}, std::false_type{});
    }
  };
  if (rb == 4)
    nb(std::integral_constant<int, 4>{});
  else if (rb == 2)
    nb(std::integral_constant<int, 2>{});
  else
    nb(std::integral_constant<int, 1>{});
}

}  // namespace

void gemv_split(const bf16* W, int N, int K, const void* x, bool x_f32, int64_t x_stride, int B,
                float* y, int64_t y_stride, bool accumulate, cudaStream_t s, int rows_per_warp) {
  if (N <= 0 || B <= 0) return;
  const bool vec = K % 8 == 0 && x_stride % 8 == 0 && aligned16(W) && aligned16(x);
  const int kw = warps_along_k(K);
  const int rb = rows_per_warp > 0 ? rows_per_warp : rows_per_group(1, N, kWarps / kw);
  dispatch(rb, B == 1, vec, [&](auto R, auto NB, auto V) {
    constexpr int r = decltype(R)::value, nb = decltype(NB)::value;
    constexpr bool v = decltype(V)::value;
    if (x_f32)
      launch_dense<float, r, nb, v, false>(W, N, K, kw, static_cast<const float*>(x), x_stride, B,
                                           y, y_stride, accumulate, s);
    else
      launch_dense<bf16, r, nb, v, false>(W, N, K, kw, static_cast<const bf16*>(x), x_stride, B, y,
                                          y_stride, accumulate, s);
  });
}

void gemv_swiglu(const bf16* W, int N, int K, const float* gu, int64_t gu_stride, int B, float* y,
                 int64_t y_stride, bool accumulate, cudaStream_t s, int rows_per_warp) {
  if (N <= 0 || B <= 0) return;
  const bool vec = K % 8 == 0 && gu_stride % 8 == 0 && aligned16(W) && aligned16(gu);
  const int kw = warps_along_k(K);
  const int rb = rows_per_warp > 0 ? rows_per_warp : rows_per_group(1, N, kWarps / kw);
  dispatch(rb, B == 1, vec, [&](auto R, auto NB, auto V) {
    launch_dense<float, decltype(R)::value, decltype(NB)::value, decltype(V)::value, true>(
        W, N, K, kw, gu, gu_stride, B, y, y_stride, accumulate, s);
  });
}

void expert_gemv_split(const bf16* W0, int64_t expert_stride, int N, int K, const bf16* x,
                       int64_t x_stride, int in_div, const MoePlan& plan, int max_groups,
                       int max_count, float* y, int64_t y_stride, cudaStream_t s,
                       int rows_per_warp) {
  if (N <= 0 || max_groups <= 0) return;
  const bool vec =
      K % 8 == 0 && x_stride % 8 == 0 && expert_stride % 8 == 0 && aligned16(W0) && aligned16(x);
  const int kw = warps_along_k(K);
  const int rb = rows_per_warp > 0 ? rows_per_warp : rows_per_group(max_groups, N, kWarps / kw);
  dispatch(rb, max_count == 1, vec, [&](auto R, auto NB, auto V) {
    launch_expert<bf16, decltype(R)::value, decltype(NB)::value, decltype(V)::value, false>(
        W0, expert_stride, N, K, kw, x, x_stride, in_div, plan, max_groups, y, y_stride, s);
  });
}

void expert_swiglu(const bf16* W0, int64_t expert_stride, int N, int K, const float* gu,
                   int64_t gu_stride, const MoePlan& plan, int max_groups, int max_count, float* y,
                   int64_t y_stride, cudaStream_t s, int rows_per_warp) {
  if (N <= 0 || max_groups <= 0) return;
  const bool vec =
      K % 8 == 0 && gu_stride % 8 == 0 && expert_stride % 8 == 0 && aligned16(W0) && aligned16(gu);
  const int kw = warps_along_k(K);
  const int rb = rows_per_warp > 0 ? rows_per_warp : rows_per_group(max_groups, N, kWarps / kw);
  dispatch(rb, max_count == 1, vec, [&](auto R, auto NB, auto V) {
    launch_expert<float, decltype(R)::value, decltype(NB)::value, decltype(V)::value, true>(
        W0, expert_stride, N, K, kw, gu, gu_stride, 1, plan, max_groups, y, y_stride, s);
  });
}

}  // namespace kimi::inference::engine::cuda
