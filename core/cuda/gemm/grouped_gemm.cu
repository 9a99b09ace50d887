// Kernels of core/cuda/gemm/grouped_gemm.h. The grouped GEMM is a plain shared-memory tiled GEMM
// (16 x 16 output tiles, fp32 accumulation; fp64 for F64) whose row tiles never straddle two
// experts: a one-thread pass turns the device offsets into each expert's first tile, and every
// block finds its expert by binary search over them, so the grid is sized by a host-known bound
// (S / 16 + E tiles) and surplus blocks exit. Correct first; not tuned (no tensor cores).
#include <cuda_bf16.h>

#include "core/cuda/gemm/grouped_gemm.h"
#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/cuda/runtime/elem_access.cuh"

namespace kimi::cuda {
namespace {

using namespace elem;
constexpr int kT = static_cast<int>(kGroupTile);

template <class F>
void dispatch(ElemType t, const char* what, F&& f) {
  switch (t) {
    case ElemType::kF32: f(float{}); break;
    case ElemType::kBF16: f(__nv_bfloat16{}); break;
    case ElemType::kF64: f(double{}); break;
    default: KIMI_CUDA_REQUIRE(false, what);
  }
}

// tiles[e] = the first row tile of expert e; tiles[E] = all tiles.
__global__ void tile_starts_kernel(int64_t E, const int64_t* offsets, int64_t* tiles) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  int64_t acc = 0;
  for (int64_t e = 0; e < E; ++e) {
    tiles[e] = acc;
    const int64_t n = offsets[e + 1] - offsets[e];
    acc += n > 0 ? (n + kT - 1) / kT : 0;
  }
  tiles[E] = acc;
}

// grid (row tiles bound, N tiles), block (kT, kT): thread (tx, ty) computes y[row ty][col tx].
template <class T, bool kOutIn>
__global__ void grouped_gemm_kernel(int64_t N, int64_t K, int64_t E, const T* x, const T* w,
                                    const int64_t* offsets, const int64_t* tiles, T* y) {
  using A = acc_t<T>;
  __shared__ A xs[kT][kT + 1];
  __shared__ A ws[kT][kT + 1];
  const int64_t tile = blockIdx.x;
  if (tile >= tiles[E]) return;  // the whole block leaves together
  int64_t lo = 0, hi = E - 1;    // the last e with tiles[e] <= tile (empty experts skipped)
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (tiles[mid] <= tile)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int64_t e = lo;
  const int64_t row0 = offsets[e] + (tile - tiles[e]) * kT, row_end = offsets[e + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row = row0 + ty, col = blockIdx.y * static_cast<int64_t>(kT) + tx;
  const T* we = w + e * N * K;
  A acc = 0;
  for (int64_t k0 = 0; k0 < K; k0 += kT) {
    const int64_t kx = k0 + tx;  // x tile: row ty, depth tx
    xs[ty][tx] = (row < row_end && kx < K) ? ld(x + row * K + kx) : A(0);
    // w tile: depth ty, output column tx
    const int64_t kw = k0 + ty;
    A wv = 0;
    if (kw < K && col < N) wv = kOutIn ? ld(we + col * K + kw) : ld(we + kw * N + col);
    ws[ty][tx] = wv;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kT; ++kk) acc += xs[ty][kk] * ws[kk][tx];
    __syncthreads();
  }
  if (row < row_end && col < N) st(y + row * N + col, acc);
}

// grid (I tiles, O tiles, E), block (kT, kT): thread (tx, ty) sums dw[e][o0 + ty][i0 + tx].
template <class T>
__global__ void grouped_wgrad_kernel(int64_t O, int64_t I, const T* g, const T* x,
                                     const int64_t* offsets, T* dw) {
  using A = acc_t<T>;
  __shared__ A gs[kT][kT + 1];
  __shared__ A xs[kT][kT + 1];
  const int64_t e = blockIdx.z;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t o0 = blockIdx.y * static_cast<int64_t>(kT),
                i0 = blockIdx.x * static_cast<int64_t>(kT);
  const int64_t r_begin = offsets[e], r_end = offsets[e + 1];
  A acc = 0;
  for (int64_t r0 = r_begin; r0 < r_end; r0 += kT) {
    const int64_t r = r0 + ty;  // rows along ty for both loads
    gs[ty][tx] = (r < r_end && o0 + tx < O) ? ld(g + r * O + o0 + tx) : A(0);
    xs[ty][tx] = (r < r_end && i0 + tx < I) ? ld(x + r * I + i0 + tx) : A(0);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kT; ++rr) acc += gs[rr][ty] * xs[rr][tx];
    __syncthreads();
  }
  if (o0 + ty < O && i0 + tx < I) st(dw + (e * O + o0 + ty) * I + i0 + tx, acc);
}

// One thread per token; the choice is recomputed from scores + bias instead of being stored.
template <class T>
__global__ void route_kernel(int64_t N, int64_t E, int64_t K, int64_t groups, int64_t topk_group,
                             const T* scores, const T* bias, int32_t* ids, int32_t* flat) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (n >= N) return;
  const T* s = scores + n * E;
  const int64_t per = E / groups;
  uint64_t allowed = ~uint64_t{0};
  if (groups > 1) {
    // Group score: the sum of its two best biased scores (in double, as the CPU kernel).
    double gscore[kMaxRouteGroups];
    for (int64_t gi = 0; gi < groups; ++gi) {
      double b1 = -INFINITY, b2 = -INFINITY;
      for (int64_t e = gi * per; e < (gi + 1) * per; ++e) {
        const double v = static_cast<T>(s[e] + bias[e]);
        if (v > b1)
          b2 = b1, b1 = v;
        else if (v > b2)
          b2 = v;
      }
      gscore[gi] = per >= 2 ? b1 + b2 : b1;
    }
    allowed = 0;
    for (int64_t j = 0; j < topk_group; ++j) {  // the best groups, ties to the lower index
      int64_t best = -1;
      for (int64_t gi = 0; gi < groups; ++gi)
        if (!(allowed >> gi & 1) && (best < 0 || gscore[gi] > gscore[best])) best = gi;
      allowed |= uint64_t{1} << best;
    }
  }
  int32_t chosen[kMaxRouteTopK];
  for (int64_t k = 0; k < K; ++k) {
    int64_t best = -1;
    T best_v = 0;
    for (int64_t e = 0; e < E; ++e) {
      if (!(allowed >> (e / per) & 1)) continue;
      bool taken = false;
      for (int64_t j = 0; j < k; ++j) taken = taken || chosen[j] == e;
      if (taken) continue;
      const T v = s[e] + bias[e];
      if (best < 0 || v > best_v) best = e, best_v = v;
    }
    chosen[k] = static_cast<int32_t>(best);
    ids[n * K + k] = static_cast<int32_t>(best);
    flat[n * K + k] = static_cast<int32_t>(n * E + best);
  }
}

constexpr int kSortThreads = 256;

// Block e counts the slots routed to expert e.
__global__ void count_kernel(int64_t S, const int32_t* ids, int64_t* counts) {
  __shared__ int64_t part[kSortThreads];
  const int32_t e = blockIdx.x;
  int64_t c = 0;
  for (int64_t s = threadIdx.x; s < S; s += kSortThreads) c += ids[s] == e;
  part[threadIdx.x] = c;
  __syncthreads();
  for (int w = kSortThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) counts[e] = part[0];
}

// Block e writes its run: slots of expert e in slot order (a block-wide prefix count per chunk of
// kSortThreads slots, warp ballots then the warps' totals), so the sort is stable.
__global__ void place_kernel(int64_t S, int64_t K, int64_t E, const int32_t* ids,
                             const int64_t* counts, int32_t* token, int32_t* position,
                             int64_t* offsets) {
  __shared__ int64_t base;
  __shared__ int warp_total[kSortThreads / 32];
  const int32_t e = blockIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (threadIdx.x == 0) {
    int64_t b = 0;
    for (int32_t j = 0; j < e; ++j) b += counts[j];
    base = b;
    if (e == 0) offsets[0] = 0;
    offsets[e + 1] = b + counts[e];
  }
  __syncthreads();
  for (int64_t s0 = 0; s0 < S; s0 += kSortThreads) {
    const int64_t s = s0 + threadIdx.x;
    const bool mine = s < S && ids[s] == e;
    const unsigned mask = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_total[warp] = __popc(mask);
    __syncthreads();
    int before = __popc(mask & ((1u << lane) - 1u));
    for (int w = 0; w < warp; ++w) before += warp_total[w];
    if (mine) {
      const int64_t p = base + before;
      position[s] = static_cast<int32_t>(p);
      token[p] = static_cast<int32_t>(s / K);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int total = 0;
      for (int w = 0; w < kSortThreads / 32; ++w) total += warp_total[w];
      base += total;
    }
    __syncthreads();
  }
}

}  // namespace

void grouped_gemm(ElemType t, int64_t S, int64_t N, int64_t K, int64_t E, const void* x,
                  const void* w, bool w_out_in, const int64_t* offsets, int64_t* tiles, void* y) {
  if (S == 0 || N == 0 || E == 0) return;
  tile_starts_kernel<<<1, 1, 0, stream()>>>(E, offsets, tiles);
  KIMI_CUDA_CHECK_LAUNCH();
  // Row tiles on x (up to 2^31 - 1 blocks), output tiles on y (up to 65535).
  const int64_t max_tiles = (S + kT - 1) / kT + E;
  KIMI_CUDA_REQUIRE((N + kT - 1) / kT <= 65535 && max_tiles < (int64_t{1} << 31),
                    "grouped_gemm: at most 65535 * 16 output columns and 2^31 row tiles");
  const dim3 grid(static_cast<unsigned>(max_tiles), static_cast<unsigned>((N + kT - 1) / kT));
  const dim3 block(kT, kT);
  dispatch(t, "grouped_gemm: F32, BF16 or F64", [&](auto tag) {
    using T = decltype(tag);
    if (w_out_in)
      grouped_gemm_kernel<T, true><<<grid, block, 0, stream()>>>(N, K, E, static_cast<const T*>(x),
                                                                 static_cast<const T*>(w), offsets,
                                                                 tiles, static_cast<T*>(y));
    else
      grouped_gemm_kernel<T, false><<<grid, block, 0, stream()>>>(N, K, E, static_cast<const T*>(x),
                                                                  static_cast<const T*>(w), offsets,
                                                                  tiles, static_cast<T*>(y));
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void grouped_gemm_wgrad(ElemType t, int64_t S, int64_t O, int64_t I, int64_t E, const void* g,
                        const void* x, const int64_t* offsets, void* dw) {
  if (O == 0 || I == 0 || E == 0) return;
  KIMI_CUDA_REQUIRE((O + kT - 1) / kT <= 65535 && E <= 65535, "grouped_gemm: too many outputs");
  const dim3 grid(static_cast<unsigned>((I + kT - 1) / kT),
                  static_cast<unsigned>((O + kT - 1) / kT), static_cast<unsigned>(E));
  dispatch(t, "grouped_gemm: F32, BF16 or F64", [&](auto tag) {
    using T = decltype(tag);
    grouped_wgrad_kernel<T><<<grid, dim3(kT, kT), 0, stream()>>>(
        O, I, static_cast<const T*>(g), static_cast<const T*>(x), offsets, static_cast<T*>(dw));
  });
  KIMI_CUDA_CHECK_LAUNCH();
  (void)S;
}

void moe_route_topk(ElemType t, int64_t N, int64_t E, int64_t K, int64_t groups, int64_t topk_group,
                    const void* scores, const void* bias, int32_t* ids, int32_t* flat) {
  if (N == 0) return;
  KIMI_CUDA_REQUIRE(K <= kMaxRouteTopK && groups <= kMaxRouteGroups, "moe_route_topk: limits");
  const unsigned blocks = static_cast<unsigned>((N + 127) / 128);
  if (t == ElemType::kF32)
    route_kernel<float><<<blocks, 128, 0, stream()>>>(N, E, K, groups, topk_group,
                                                      static_cast<const float*>(scores),
                                                      static_cast<const float*>(bias), ids, flat);
  else if (t == ElemType::kF64)
    route_kernel<double><<<blocks, 128, 0, stream()>>>(N, E, K, groups, topk_group,
                                                       static_cast<const double*>(scores),
                                                       static_cast<const double*>(bias), ids, flat);
  else
    KIMI_CUDA_REQUIRE(false, "moe_route_topk: F32 or F64 scores");
  KIMI_CUDA_CHECK_LAUNCH();
}

void moe_sort_by_expert(int64_t N, int64_t K, int64_t E, const int32_t* ids, int32_t* token,
                        int32_t* position, int64_t* offsets, int64_t* counts) {
  const int64_t S = N * K;
  count_kernel<<<static_cast<unsigned>(E), kSortThreads, 0, stream()>>>(S, ids, counts);
  KIMI_CUDA_CHECK_LAUNCH();
  place_kernel<<<static_cast<unsigned>(E), kSortThreads, 0, stream()>>>(S, K, E, ids, counts, token,
                                                                        position, offsets);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::cuda
