// Chunkwise delta rule backward on the GPU, the per-chunk kernel B2: the products with the chunk
// states h and dh (stages and notation in delta_rule_chunk_bwd.cuh, math as in
// core/cpu/delta_rule_chunk_bwd.cpp). B3, the WY/UT backward, is delta_rule_chunk_bwd_wy.cu.
#include <type_traits>

#include "core/cuda/delta_rule/bwd_mma.cuh"
#include "core/cuda/delta_rule/delta_rule_chunk_bwd.cuh"
#include "core/cuda/delta_rule/kernel_choice.h"
#include "core/cuda/delta_rule/state_mma.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {
detail::KernelChoice g_dhv_choice("KIMI_CUDA_BWD_DHV_KERNEL");
}  // namespace
void force_chunk_bwd_dhv_kernel(ChunkBwdDhKernel k) { g_dhv_choice.force(k); }
bool chunk_bwd_dhv_old() { return g_dhv_choice.old(); }
}  // namespace kimi::cuda

namespace kimi::cuda::detail::chunk_bwd {
namespace {

// B2, one block per (chunk, batch*head), V streamed in tiles of BV: with h = h_c, dh = dh_c,
//   dGq = dO h^T, dW = -dV' h^T, dKd = V' dh^T (kC x kD), dA_qk = dO V'^T (lower 16 x 16
//   tiles), deL = rowsum(dh o h).
// Each warp keeps its output tiles in accumulators across the V tiles and stores them straight
// to the fp32 workspaces: bf16 mma.sync with kMma (bwd_mma.cuh; the operands h, dh, dO, V', dV'
// are stored in Ti, so for bf16 inputs the rounding to bf16 is exact and only the order of the
// fp32 sums differs from the WMMA TF32 products of KIMI_CUDA_BWD_DHV_KERNEL=old). With kPre (bf16
// rows of whole vectors) the five tiles of a V tile are all in flight before the first is stored.
// Shared (floats): sH, sdH (kD x ldb), sdO, sVp, sdV (kC x ldb). One 16 x 16 output tile's
// accumulator on either path.
struct MmaAcc {
  float v[2][4];
};
__device__ __forceinline__ void acc_zero(FragC& a) { wmma::fill_fragment(a, 0.f); }
__device__ __forceinline__ void acc_zero(MmaAcc& a) { bwd_mma::zero_16x16(a.v); }
__device__ __forceinline__ void acc_mma_abt(FragC& a, const float* x, const float* y, int ld,
                                            int kdim) {
  mma_16x16<false, true>(a, x, ld, y, ld, kdim);
}
__device__ __forceinline__ void acc_mma_abt(MmaAcc& a, const float* x, const float* y, int ld,
                                            int kdim) {
  bwd_mma::mma_16x16_bf16<false, true>(a.v, x, ld, y, ld, kdim);
}
__device__ __forceinline__ void acc_store(float* c, int ldc, FragC& a, float alpha) {
  if (alpha != 1.f) {
#pragma unroll
    for (int e = 0; e < a.num_elements; ++e) a.x[e] *= alpha;
  }
  wmma::store_matrix_sync(c, a, ldc, wmma::mem_row_major);
}
__device__ __forceinline__ void acc_store(float* c, int ldc, MmaAcc& a, float alpha) {
  bwd_mma::store_16x16(c, ldc, a.v, alpha);
}

// kNoW: the gated linear recurrence (no delta rule): V' = v (bw.Vp), no dW (nor dV' read), so
// 8 nt + 10 tiles.
template <class Ti, int kD, int BV, bool kPre, bool kMma, bool kNoW = false>
__global__ void __launch_bounds__(kNT, 1)
    dhv_kernel(Params<Ti> p, ChunkDims cd, BwdBuffers<Ti> bw) {
  using Acc = std::conditional_t<kMma, MmaAcc, FragC>;
  extern __shared__ __align__(128) float smem[];
  constexpr int ldb = BV + 4, nt = kD / kBS, kOuts = kNoW ? 2 : 3;
  constexpr int kTiles = 4 * kOuts * nt + 10, kSlots = (kTiles + kNW - 1) / kNW;
  float* sH = smem;
  float* sdH = sH + kD * ldb;
  float* sdO = sdH + kD * ldb;
  float* sVp = sdO + kC * ldb;
  float* sdV = sVp + kC * ldb;
  const int c = blockIdx.x, bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x / 32;
  const int t0 = c * kC, L = min(kC, p.T - t0);
  const int64_t item = int64_t(bh) * cd.NC + c, rs_v = int64_t(p.H) * p.V;
  const int64_t hoff = item * p.K * p.V;
  // tile t: 0 <= t < 4 kOuts nt: output `which` (dGq, dW, dKd; kNoW: dGq, dKd), row block I,
  // column block N; else the lower tile (I, J) of dA_qk.
  auto decode = [&](int t, int& which, int& I, int& N) {
    if (t < 4 * kOuts * nt) {
      which = t / (4 * nt);
      if (kNoW && which == 1) which = 2;
      I = (t % (4 * nt)) / nt;
      N = t % nt;
    } else {
      const int u = t - 4 * kOuts * nt;
      which = 3;
      I = u < 1 ? 0 : u < 3 ? 1 : u < 6 ? 2 : 3;
      N = u - I * (I + 1) / 2;
    }
  };
  Acc acc[kSlots];
#pragma unroll
  for (int s = 0; s < kSlots; ++s) acc_zero(acc[s]);
  float el = 0.f;
  for (int v0 = 0; v0 < p.V; v0 += BV) {
    __syncthreads();
    const RowsSpec hs{hoff, p.V, p.K, p.V, v0}, vs{p.vo(b, t0, h), rs_v, L, p.V, v0};
    if constexpr (kPre) {
      constexpr int kHS = (kD * BV / kVecWidth<Ti> + kNT - 1) / kNT;
      constexpr int kVS = (kC * BV / kVecWidth<Ti> + kNT - 1) / kNT;
      RowsPrefetch<Ti, kD, BV, kHS> ph, pdh;
      RowsPrefetch<Ti, kC, BV, kVS> pdo, pvp, pdv;
      ph.issue(bw.h, hs);
      pdh.issue(bw.dh, hs);
      pdo.issue(bw.do_, vs);
      pvp.issue(bw.Vp, vs);
      if constexpr (!kNoW) pdv.issue(bw.dVp, vs);
      ph.commit(sH, ldb, hs);
      pdh.commit(sdH, ldb, hs);
      pdo.commit(sdO, ldb, vs);
      pvp.commit(sVp, ldb, vs);
      if constexpr (!kNoW) pdv.commit(sdV, ldb, vs);
    } else {
      load_rows<Ti, kD, BV>(sH, ldb, bw.h, hs);
      load_rows<Ti, kD, BV>(sdH, ldb, bw.dh, hs);
      load_rows<Ti, kC, BV>(sdO, ldb, bw.do_, vs);
      load_rows<Ti, kC, BV>(sVp, ldb, bw.Vp, vs);
      if constexpr (!kNoW) load_rows<Ti, kC, BV>(sdV, ldb, bw.dVp, vs);
    }
    __syncthreads();
    if (threadIdx.x < kD) {
      const float* a = sH + threadIdx.x * ldb;
      const float* d = sdH + threadIdx.x * ldb;
#pragma unroll 8
      for (int j = 0; j < BV; ++j) el += a[j] * d[j];
    }
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int t = warp + s * kNW;
      if (t < kTiles) {
        int which, I, N;
        decode(t, which, I, N);
        const float* a = (which == 0 || which == 3 ? sdO : which == 1 ? sdV : sVp) + I * kBS * ldb;
        const float* bt = (which == 2 ? sdH : which == 3 ? sVp : sH) + N * kBS * ldb;
        acc_mma_abt(acc[s], a, bt, ldb, BV);
      }
    }
  }
#pragma unroll
  for (int s = 0; s < kSlots; ++s) {
    const int t = warp + s * kNW;
    if (t < kTiles) {
      int which, I, N;
      decode(t, which, I, N);
      if (which == 3) {
        acc_store(bw.dAqk + (item * kC + I * kBS) * kC + N * kBS, kC, acc[s], 1.f);
      } else {
        float* ws = which == 0 ? bw.ws0 : which == 1 ? bw.ws1 : bw.ws2;
        acc_store(ws + (item * kC + I * kBS) * kD + N * kBS, kD, acc[s], which == 1 ? -1.f : 1.f);
      }
    }
  }
  if (threadIdx.x < kD) bw.deL[item * kD + threadIdx.x] = el;
}

template <class Ti, int kD, bool kPre, bool kMma = false, bool kNoW = false>
void launch_dhv_as(const Params<Ti>& p, const ChunkDims& cd, const BwdBuffers<Ti>& bw,
                   cudaStream_t stream) {
  constexpr int BV = 64;
  const size_t smem = size_t(2 * kD + 3 * kC) * (BV + 4) * sizeof(float);
  set_smem(dhv_kernel<Ti, kD, BV, kPre, kMma, kNoW>, smem);
  const dim3 grid(unsigned(cd.NC), unsigned(p.B * p.H));
  dhv_kernel<Ti, kD, BV, kPre, kMma, kNoW><<<grid, kNT, smem, stream>>>(p, cd, bw);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class Ti>
void launch_dhv(const Params<Ti>& p, const ChunkDims& cd, const BwdBuffers<Ti>& bw,
                cudaStream_t stream) {
  if constexpr (sizeof(Ti) == 2) {  // bf16 products unless KIMI_CUDA_BWD_DHV_KERNEL=old
    const bool pre = use_prefetch(p), mma = !chunk_bwd_dhv_old();
    if (pre && mma && cd.D == 64) return launch_dhv_as<Ti, 64, true, true>(p, cd, bw, stream);
    if (pre && mma) return launch_dhv_as<Ti, 128, true, true>(p, cd, bw, stream);
    if (mma && cd.D == 64) return launch_dhv_as<Ti, 64, false, true>(p, cd, bw, stream);
    if (mma) return launch_dhv_as<Ti, 128, false, true>(p, cd, bw, stream);
    if (pre) {
      if (cd.D == 64) return launch_dhv_as<Ti, 64, true>(p, cd, bw, stream);
      return launch_dhv_as<Ti, 128, true>(p, cd, bw, stream);
    }
  }
  if (cd.D == 64) return launch_dhv_as<Ti, 64, false>(p, cd, bw, stream);
  launch_dhv_as<Ti, 128, false>(p, cd, bw, stream);
}

void launch_dhv_linear(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                       const BwdBuffers<__nv_bfloat16>& bw, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(use_prefetch(p), "linear recurrence bwd (dhv): K and V multiples of 8");
  if (cd.D == 64) return launch_dhv_as<__nv_bfloat16, 64, true, true, true>(p, cd, bw, stream);
  launch_dhv_as<__nv_bfloat16, 128, true, true, true>(p, cd, bw, stream);
}

#define KIMI_INSTANTIATE(Ti)                                                               \
  template void launch_dhv<Ti>(const Params<Ti>&, const ChunkDims&, const BwdBuffers<Ti>&, \
                               cudaStream_t);
KIMI_INSTANTIATE(float)
KIMI_INSTANTIATE(__nv_bfloat16)
#undef KIMI_INSTANTIATE

}  // namespace kimi::cuda::detail::chunk_bwd
