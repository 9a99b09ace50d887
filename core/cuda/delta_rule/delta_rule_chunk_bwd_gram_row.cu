// Chunkwise delta rule backward on the GPU, kernel B4 for scalar gates (GDN) and none (DeltaNet)
// with ONE block per chunk-head (KIMI_CUDA_GRAM_ROW=block, the default for bf16 rows of whole
// vectors; notation in delta_rule_chunk_bwd_gram.cu). The decay Gamma_ij = exp(G_i - G_j) is one
// number per row pair, so M1 = X1 o Gamma and M2 = X2 o Gamma are formed once per chunk-head and
// kept in shared memory (the split row kernel, one block per 32 channels, loaded dA_qk / dA_kk
// and took the 64 x 64 exps in each of its K / 32 blocks), and every product is a plain GEMM:
//   Z = M1^T Q + M2^T K,  Y1 = M1 K,  Y2 = M2 K.
// The channels run in slices of 32 (q, k of a slice in shared memory; the next slice's in
// registers while the current one's products run). Each warp owns one 16 x 16 output tile of a
// slice and takes Z, Y2, Y1 for it one after the other (2 (4 - R) + 2 (R + 1) = 10 k-steps for
// every row block R: balanced), finishing its elements from the accumulators: dGk, dKd (after
// Z) and dGq (after Y1) read from the workspaces in the accumulator layout, each issued one
// product ahead so that its latency hides under it; dq and dk stored. A scalar gate's dG is only
// needed summed over the channels, so each lane keeps its two rows' sums in registers over all
// slices; at the end the block adds them up and takes the reverse cumulative sum down the chunk: dg
// is written here, with no per-channel workspace and no scalar_dg_kernel.
#include "core/cuda/delta_rule/bwd_mma.cuh"
#include "core/cuda/delta_rule/delta_rule_chunk_bwd.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda::detail::chunk_bwd {
namespace {

using Tb = __nv_bfloat16;

constexpr int kRT = 256;  // threads: one warp per 16 x 16 output tile of a slice
constexpr int kRW = kRT / 32;
constexpr int kKS = 32;  // channels per slice
constexpr int kLdS = kKS + 4;
static_assert(kRW == (kC / kBS) * (kKS / kBS), "one output tile of a slice per warp");

// Shared (floats): sM1, sM2 (kC x kLdA), sQ, sK (kC x kLdS), sG, sEG, sED (kC: G, exp(G),
// exp(G_L - G) per row), sRow (2 x kC: the two column tiles' row sums of dG), sRed (kRW).
constexpr size_t row_block_smem() {
  return size_t(2 * kC * kLdA + 2 * kC * kLdS + 5 * kC + kRW) * sizeof(float);
}

// G = cumsum(g) down the chunk (g = 0 past L and without a gate) with exp(G) and exp(G_L - G):
// warp 0, two rows a lane (rows lane and lane + 32).
__device__ void row_gates(const Params<Tb>& p, int b, int h, int t0, int L, float* sG, float* sEG,
                          float* sED) {
  if (threadIdx.x >= 32) return;
  const int lane = threadIdx.x;
  float x[2];
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int i = lane + 32 * u;
    x[u] = (p.g && i < L) ? ld(p.g + p.tok(b, t0 + i, h)) : 0.f;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float y = __shfl_up_sync(0xffffffffu, x[u], o);
      if (lane >= o) x[u] += y;
    }
  }
  x[1] += __shfl_sync(0xffffffffu, x[0], 31);
  const float GL = __shfl_sync(0xffffffffu, x[1], 31);  // rows past L carry g = 0: G[kC-1]
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int i = lane + 32 * u;
    sG[i] = x[u];
    sEG[i] = __expf(x[u]);
    sED[i] = __expf(GL - x[u]);
  }
}

// M1 = scale tril(dA_qk) o Gamma, M2 = strict_lower(dA_kk) o Gamma (not with kNoW), in place.
template <bool kNoW = false>
__device__ void form_m(float* sM1, float* sM2, const float* sG, float scale) {
  for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) {
    const int i = e / kC, j = e % kC, x = i * kLdA + j;
    const float gm = j <= i ? __expf(sG[i] - sG[j]) : 0.f;  // <= 1: G falls along the chunk
    sM1[x] = j <= i ? scale * gm * sM1[x] : 0.f;
    if constexpr (!kNoW) sM2[x] = j < i ? gm * sM2[x] : 0.f;
  }
}

// One lane's element pairs of a 16 x 16 tile in the accumulator layout: [nt][hr] holds row
// g + 8 hr, columns 8 nt + 2 t and + 1 (bwd_mma_tiles::c_elem, elements 2 hr and 2 hr + 1).
struct TilePairs {
  float2 v[2][2];
  __device__ __forceinline__ void load(const float* src, int lds) {  // src: the tile's (0, 0)
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const mma_tiles::RowCol x = bwd_mma_tiles::c_elem(lane, 2 * hr);
        v[nt][hr] = __ldg(reinterpret_cast<const float2*>(src + x.row * lds + 8 * nt + x.col));
      }
  }
};

// Calls f(nt, hr, h, row, col) for each of the lane's 8 elements of a 16 x 16 tile
// (acc[nt][2 hr + h]; row, col inside the tile).
template <class F>
__device__ __forceinline__ void for_tile_elems(F&& f) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const mma_tiles::RowCol x = bwd_mma_tiles::c_elem(lane, 2 * hr + h);
        f(nt, hr, h, x.row, 8 * nt + x.col);
      }
}

__device__ __forceinline__ float pick(const float2& v, int h) { return h ? v.y : v.x; }

// dg of a scalar gate: the row sums of dG (the column tiles' sRow halves, row L-1 plus `last`)
// summed from the chunk's end backwards; warp 0, two rows a lane.
__device__ void store_row_dg(const Params<Tb>& p, Tb* dg, const float* sRow, float last, int b,
                             int h, int t0, int L) {
  if (threadIdx.x >= 32) return;
  const int lane = threadIdx.x;
  float x[2];
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int i = 2 * lane + u;
    x[u] = sRow[i] + sRow[kC + i] + (i == L - 1 ? last : 0.f);
  }
  float s = x[0] + x[1];  // suffix sums over the lanes' row pairs
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float y = __shfl_down_sync(0xffffffffu, s, o);
    if (lane + o < 32) s += y;
  }
  const float v[2] = {s, s - x[0]};
#pragma unroll
  for (int u = 0; u < 2; ++u)
    if (2 * lane + u < L) st(dg + p.tok(b, t0 + 2 * lane + u, h), v[u]);
}

// Grid (chunks, B*H), kRT threads; kD: the workspaces' padded head size. kNoW: the gated linear
// recurrence (no delta rule): X2 = dA_kk and dGk are zero, so neither is read and Y2 is not taken.
template <int kD, bool kNoW = false>
__global__ void __launch_bounds__(kRT, 3)
    gram_row_block_kernel(Params<Tb> p, ChunkDims cd, BwdBuffers<Tb> bw) {
  extern __shared__ __align__(128) float smem[];
  float* sM1 = smem;
  float* sM2 = sM1 + kC * kLdA;
  float* sQ = sM2 + kC * kLdA;
  float* sK = sQ + kC * kLdS;
  float* sG = sK + kC * kLdS;
  float* sEG = sG + kC;
  float* sED = sEG + kC;
  float* sRow = sED + kC;
  float* sRed = sRow + 2 * kC;
  const int c = blockIdx.x, bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int t0 = c * kC, L = min(kC, p.T - t0), nsl = (p.K + kKS - 1) / kKS;
  const int64_t item = int64_t(bh) * cd.NC + c, rs_k = int64_t(p.H) * p.K;
  const bool gated = p.gate != GateKind::kNone;
  auto qspec = [&](int s) { return RowsSpec{p.qk(b, t0, h), rs_k, L, p.K, s * kKS}; };
  constexpr int kQS = (kC * kKS / kVecWidth<Tb> + kRT - 1) / kRT;
  RowsPrefetch<Tb, kC, kKS, kQS> pq, pk;
  {
    const RowsSpec aspec{item * kC * kC, kC, kC, kC, 0};
    constexpr int kAS = (kC * kC / 4 + kRT - 1) / kRT;
    RowsPrefetch<float, kC, kC, kAS> pa, pb;
    pa.issue(bw.dAqk, aspec);
    if constexpr (!kNoW) pb.issue(bw.dAkk, aspec);
    pq.issue(p.q, qspec(0));
    pk.issue(p.k, qspec(0));
    row_gates(p, b, h, t0, L, sG, sEG, sED);
    pa.commit(sM1, kLdA, aspec);
    if constexpr (!kNoW) pb.commit(sM2, kLdA, aspec);
    pq.commit(sQ, kLdS, qspec(0));
    pk.commit(sK, kLdS, qspec(0));
  }
  __syncthreads();
  form_m<kNoW>(sM1, sM2, sG, p.scale);
  // tsum: this thread's share of dG's row L-1 extra (colsum(Kd o dKd) + deL exp(G_L), summed
  // over the channels); rs: the lane's two rows' sums of dG over its columns.
  float tsum = (gated && int(threadIdx.x) < p.K)
                   ? bw.deL[item * kD + threadIdx.x] * __expf(sG[kC - 1])
                   : 0.f;
  float rs[2] = {0.f, 0.f};
  __syncthreads();
  const int r0 = (warp >> 1) * kBS, c0 = (warp & 1) * kBS;
  for (int s = 0; s < nsl; ++s) {
    const int col0 = s * kKS;
    const int64_t wo = (item * kC + r0) * kD + col0 + c0;
    TilePairs w1, w2;  // dGk, dKd of the tile: in flight during Z
    if constexpr (kNoW)
      w1 = TilePairs{};  // dGk = 0
    else
      w1.load(bw.ws1 + wo, kD);
    w2.load(bw.ws2 + wo, kD);
    if (s + 1 < nsl) {
      pq.issue(p.q, qspec(s + 1));
      pk.issue(p.k, qspec(s + 1));
    }
    const float* q = sQ + r0 * kLdS + c0;
    const float* k = sK + r0 * kLdS + c0;
    auto at = [](const float* t, int row, int col) { return t[row * kLdS + col]; };
    auto valid = [&](int row, int col) { return r0 + row < L && col0 + c0 + col < p.K; };
    float dk[2][4], acc[2][4];
    // Z (rows i >= r0 of M1, M2 feed it), then the partials of dGk and dKd:
    //   dk = e^G dGk + e^(G_L - G) dKd + Z,  dG += k o (e^G dGk - e^(G_L - G) dKd - Z),
    //   row L-1 of dG += colsum(k e^(G_L - G) dKd) (tsum; padded q, k are zero, ws may not be).
    bwd_mma::zero_16x16(dk);
    bwd_mma::mma_16x16_bf16<true, false>(dk, sM1 + r0 * kLdA + r0, kLdA, q, kLdS, kC - r0);
    if constexpr (!kNoW)
      bwd_mma::mma_16x16_bf16<true, false>(dk, sM2 + r0 * kLdA + r0, kLdA, k, kLdS, kC - r0);
    for_tile_elems([&](int nt, int hr, int e, int row, int col) {
      const float eG = sEG[r0 + row], eD = sED[r0 + row], kk = at(k, row, col);
      const float dgk = eG * pick(w1.v[nt][hr], e), dkd = eD * pick(w2.v[nt][hr], e);
      float& z = dk[nt][2 * hr + e];
      if (gated && valid(row, col)) {
        rs[hr] += kk * (dgk - dkd - z);
        tsum += kk * dkd;
      }
      z += dgk + dkd;
    });
    TilePairs w0;  // dGq of the tile: in flight during Y2
    w0.load(bw.ws0 + wo, kD);
    // Y2 = M2 K (columns j < r0 + 16): dk += Y2, dG += k o Y2.
    if constexpr (!kNoW) {
      bwd_mma::zero_16x16(acc);
      bwd_mma::mma_16x16_bf16<false, false>(acc, sM2 + r0 * kLdA, kLdA, sK + c0, kLdS, r0 + kBS);
      for_tile_elems([&](int nt, int hr, int e, int row, int col) {
        const float y2 = acc[nt][2 * hr + e];
        dk[nt][2 * hr + e] += y2;
        if (gated && valid(row, col)) rs[hr] += at(k, row, col) * y2;
      });
    }
    // Y1 = M1 K: dq = scale e^G dGq + Y1, dG += q o dq.
    bwd_mma::zero_16x16(acc);
    bwd_mma::mma_16x16_bf16<false, false>(acc, sM1 + r0 * kLdA, kLdA, sK + c0, kLdS, r0 + kBS);
    for_tile_elems([&](int nt, int hr, int e, int row, int col) {
      float& dq = acc[nt][2 * hr + e];
      dq += p.scale * sEG[r0 + row] * pick(w0.v[nt][hr], e);
      if (gated && valid(row, col)) rs[hr] += at(q, row, col) * dq;
    });
    // Pairs of bf16 (K is a multiple of 8 here: whole pairs inside the row).
    for (int nt = 0; nt < 2; ++nt)
      for (int hr = 0; hr < 2; ++hr) {
        const mma_tiles::RowCol x = bwd_mma_tiles::c_elem(lane, 2 * hr);
        const int i = r0 + x.row, col = col0 + c0 + 8 * nt + x.col;
        if (i >= L || col >= p.K) continue;
        const int64_t o = p.qk(b, t0 + i, h) + col;
        *reinterpret_cast<__nv_bfloat162*>(bw.dq + o) =
            __floats2bfloat162_rn(acc[nt][2 * hr], acc[nt][2 * hr + 1]);
        *reinterpret_cast<__nv_bfloat162*>(bw.dk + o) =
            __floats2bfloat162_rn(dk[nt][2 * hr], dk[nt][2 * hr + 1]);
      }
    if (s + 1 < nsl) {
      __syncthreads();  // every warp is done with this slice's q, k
      pq.commit(sQ, kLdS, qspec(s + 1));
      pk.commit(sK, kLdS, qspec(s + 1));
      __syncthreads();
    }
  }
  // A scalar gate's dG: the row sums over the lane's four column groups (lanes t = 0..3 of a
  // row), then per column tile into sRow; tsum over the block into sRed.
  if (!gated) return;
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    rs[hr] += __shfl_xor_sync(0xffffffffu, rs[hr], 1);
    rs[hr] += __shfl_xor_sync(0xffffffffu, rs[hr], 2);
    const mma_tiles::RowCol x = bwd_mma_tiles::c_elem(lane, 2 * hr);
    if (x.col == 0) sRow[(warp & 1) * kC + r0 + x.row] = rs[hr];
  }
  tsum = warp_sum(tsum);
  if (lane == 0) sRed[warp] = tsum;
  __syncthreads();
  float last = 0.f;
  for (int w = 0; w < kRW; ++w) last += sRed[w];
  store_row_dg(p, bw.dg, sRow, last, b, h, t0, L);
}

template <int kD, bool kNoW = false>
void launch_row_block_as(const Params<Tb>& p, const ChunkDims& cd, const BwdBuffers<Tb>& bw,
                         cudaStream_t stream) {
  const auto kernel = gram_row_block_kernel<kD, kNoW>;
  constexpr size_t smem = row_block_smem();
  set_smem(kernel, smem);
  // Several blocks per SM need the carveout as shared memory.
  KIMI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                       int(cudaSharedmemCarveoutMaxShared)));
  const dim3 grid(unsigned(cd.NC), unsigned(p.B * p.H));
  kernel<<<grid, kRT, smem, stream>>>(p, cd, bw);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_gram_row_block(const Params<Tb>& p, const ChunkDims& cd, const BwdBuffers<Tb>& bw,
                           cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(p.gate != GateKind::kPerChannel && use_prefetch(p),
                    "B4 row block kernel: scalar gate or none, bf16 rows of whole vectors");
  if (cd.D == 64) return launch_row_block_as<64>(p, cd, bw, stream);
  launch_row_block_as<128>(p, cd, bw, stream);
}

void launch_gram_row_block_linear(const Params<Tb>& p, const ChunkDims& cd,
                                  const BwdBuffers<Tb>& bw, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(
      p.gate != GateKind::kPerChannel && use_prefetch(p),
      "B4 row block kernel (linear): scalar gate or none, bf16 rows of whole vectors");
  if (cd.D == 64) return launch_row_block_as<64, true>(p, cd, bw, stream);
  launch_row_block_as<128, true>(p, cd, bw, stream);
}

}  // namespace kimi::cuda::detail::chunk_bwd
