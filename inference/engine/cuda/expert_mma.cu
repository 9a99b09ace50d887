// Grouped expert products on tensor cores for large decode batches (engine_kernels.h
// expert_mma). The GEMV (gemv.cu) streams an expert's rows once per 8 of its slots; here a
// block holds up to 64 of an expert's slots (gathered through the device plan, no host sync)
// against 64 of its weight rows, so each expert's weights are read once per 64 slots: once per
// step for all but the hottest experts at B * top_k / E slots per expert. bf16 operands, fp32
// accumulation (WMMA 16x16x16), as the GEMV's fp32 sums of bf16 products up to their order.
#include <mma.h>

#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kM = 64;                           // slots per tile
constexpr int kN = 64;                           // weight rows per block
constexpr int kK = 64;                           // reduction columns per stage
constexpr int kLd = kK + 8;                      // smem row (bf16): 16-byte rows, staggered banks
constexpr int kLdc = kN + 4;                     // epilogue row (fp32)
constexpr int kThreads = 128;                    // 4 warps, each 16 slots x 64 rows
constexpr int kChunks = kM * kK / 8 / kThreads;  // 8-element pieces per thread per operand

// The slot and weight tiles, and over them (after the last stage) the fp32 output tile.
constexpr int kInBytes = (kM + kN) * kLd * 2;
constexpr int kSmemBytes = kInBytes > kM* kLdc * 4 ? kInBytes : kM* kLdc * 4;

// Eight elements of row `src` from column k (zeros past K or for a missing row). kVec: K is a
// multiple of 8 and the rows 16-byte aligned, so a piece is all in or all out.
template <bool kVec>
__device__ __forceinline__ uint4 load_piece(const bf16* src, int k, int K) {
  if (src == nullptr || k >= K) return make_uint4(0, 0, 0, 0);
  if (kVec) return __ldg(reinterpret_cast<const uint4*>(src + k));
  uint4 v;
  bf16* e = reinterpret_cast<bf16*>(&v);
#pragma unroll
  for (int j = 0; j < 8; ++j) e[j] = k + j < K ? src[k + j] : __float2bfloat16(0.f);
  return v;
}

template <bool kVec>
// 4 blocks per SM (128 registers): 64 KB of loads in flight per SM.
__global__ void __launch_bounds__(kThreads, 4)
    expert_mma_kernel(const bf16* W0, int64_t estride, int N, int K, const bf16* x, int64_t xs,
                      int in_div, MoePlan plan, float* y, int64_t ys) {
  const int g = blockIdx.x;
  if (g >= *plan.n_active) return;
  __shared__ __align__(128) char raw[kSmemBytes];
  auto* xt = reinterpret_cast<bf16(*)[kLd]>(raw);
  auto* wt = reinterpret_cast<bf16(*)[kLd]>(raw + kM * kLd * 2);
  auto* ct = reinterpret_cast<float(*)[kLdc]>(raw);
  const int n0 = blockIdx.y * kN;
  const int begin = plan.offsets[g], count = plan.offsets[g + 1] - begin;
  const bf16* W = W0 + static_cast<int64_t>(plan.active[g]) * estride;
  const int warp = threadIdx.x >> 5;
  // This thread's pieces: row r = (threadIdx.x + i * kThreads) / (kK / 8), column (.. % 8) * 8.
  const bf16* wrow[kChunks];
  int col[kChunks], row[kChunks];
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int p = threadIdx.x + i * kThreads;
    row[i] = p / (kK / 8), col[i] = (p % (kK / 8)) * 8;
    wrow[i] = n0 + row[i] < N ? W + static_cast<int64_t>(n0 + row[i]) * K : nullptr;
  }
  for (int t0 = 0; t0 < count; t0 += kM) {
    const int rows = min(kM, count - t0);
    const bf16* xrow[kChunks];
#pragma unroll
    for (int i = 0; i < kChunks; ++i)
      xrow[i] = row[i] < rows
                    ? x + static_cast<int64_t>(plan.sorted[begin + t0 + row[i]] / in_div) * xs
                    : nullptr;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kN / 16];
#pragma unroll
    for (int j = 0; j < kN / 16; ++j) wmma::fill_fragment(acc[j], 0.f);
    // Registers hold the next stage while the tensor cores work on this one.
    uint4 wr[kChunks], xr[kChunks];
#pragma unroll
    for (int i = 0; i < kChunks; ++i)
      wr[i] = load_piece<kVec>(wrow[i], col[i], K), xr[i] = load_piece<kVec>(xrow[i], col[i], K);
    const bool busy = warp * 16 < rows;  // warps past the tile's slots only stage data
    for (int k0 = 0; k0 < K; k0 += kK) {
      __syncthreads();  // the previous stage (or tile's epilogue) is done with the buffers
#pragma unroll
      for (int i = 0; i < kChunks; ++i) {
        *reinterpret_cast<uint4*>(&wt[row[i]][col[i]]) = wr[i];
        *reinterpret_cast<uint4*>(&xt[row[i]][col[i]]) = xr[i];
      }
      __syncthreads();
      if (k0 + kK < K) {
#pragma unroll
        for (int i = 0; i < kChunks; ++i)
          wr[i] = load_piece<kVec>(wrow[i], k0 + kK + col[i], K),
          xr[i] = load_piece<kVec>(xrow[i], k0 + kK + col[i], K);
      }
      if (busy) {
#pragma unroll
        for (int kk = 0; kk < kK; kk += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
          wmma::load_matrix_sync(a, &xt[warp * 16][kk], kLd);
#pragma unroll
          for (int j = 0; j < kN / 16; ++j) {
            // B (k, n) = W[n, k]: the weight tile read column-major.
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
            wmma::load_matrix_sync(b, &wt[j * 16][kk], kLd);
            wmma::mma_sync(acc[j], a, b, acc[j]);
          }
        }
      }
    }
    __syncthreads();  // the epilogue reuses the input buffers
    if (busy) {
#pragma unroll
      for (int j = 0; j < kN / 16; ++j)
        wmma::store_matrix_sync(&ct[warp * 16][j * 16], acc[j], kLdc, wmma::mem_row_major);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < rows * kN; e += kThreads) {
      const int r = e / kN, n = e % kN;
      if (n0 + n < N) y[static_cast<int64_t>(plan.sorted[begin + t0 + r]) * ys + n0 + n] = ct[r][n];
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

void expert_mma(const bf16* W0, int64_t expert_stride, int N, int K, const bf16* x,
                int64_t x_stride, int in_div, const MoePlan& plan, int max_groups, float* y,
                int64_t y_stride, cudaStream_t s) {
  if (N <= 0 || max_groups <= 0) return;
  const bool vec =
      K % 8 == 0 && x_stride % 8 == 0 && expert_stride % 8 == 0 && aligned16(W0) && aligned16(x);
  const dim3 grid(max_groups, (N + kN - 1) / kN);
  if (vec)
    expert_mma_kernel<true>
        <<<grid, kThreads, 0, s>>>(W0, expert_stride, N, K, x, x_stride, in_div, plan, y, y_stride);
  else
    expert_mma_kernel<false>
        <<<grid, kThreads, 0, s>>>(W0, expert_stride, N, K, x, x_stride, in_div, plan, y, y_stride);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::inference::engine::cuda
