// Chunkwise delta rule forward on the GPU (DESIGN.md section 3), chunks of kC = 64 tokens.
//   intra kernel, one block per (chunk, batch*head), in parallel:
//     G = cumsum(g) inside the chunk; A_kk[i,j] = beta_i k_i.(k_j o exp(G_i - G_j)) (j < i),
//     A_qk[i,j] = scale q_i.(k_j o exp(G_i - G_j)) (j <= i); Tinv = (I + A_kk)^-1 (blocked
//     forward substitution); W = Tinv (beta exp(G) o k), U = Tinv (beta v).
//   state kernel, one block per (V tile, batch*head), sequential over chunks:
//     V' = U - W S;  O = (scale q o exp(G)) S + A_qk V';  S <- exp(G_C) o S + (exp(G_C-G) o k)^T V'
// Pairwise decays use exponent differences only: for rows i in 16-row block I (first row r)
// and columns j < r, exp(G_i - G_j) = exp(G_i - G_r) exp(G_r - G_j), two factors <= 1 that
// turn the off-diagonal blocks into products on the tensor cores; inside the diagonal 16 x 16
// blocks each exp(G_i - G_j) (j <= i) is taken directly. Products: WMMA, TF32 in, fp32 out.
// Shared-memory rows are padded by 4 floats (row stride = 4 mod 32 banks; WMMA alignment kept).
#include <mma.h>

#include <algorithm>
#include <cstdlib>

#include "core/cuda/allocator.h"
#include "core/cuda/check.h"
#include "core/cuda/chunk_loads.cuh"
#include "core/cuda/delta_rule_common.cuh"

namespace kimi::cuda {
namespace {

using detail::RowsPrefetch;
using detail::RowsSpec;

using detail::ld;
using detail::Params;
using detail::st;
namespace wmma = nvcuda::wmma;

constexpr int kC = 64;   // chunk length
constexpr int kBS = 16;  // sub-block (WMMA tile) size
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kLdA = kC + 4;  // row stride of the C x C matrices

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

template <class F>
__device__ __forceinline__ void to_tf32(F& f) {
#pragma unroll
  for (int e = 0; e < f.num_elements; ++e) f.x[e] = wmma::__float_to_tf32(f.x[e]);
}

// acc += A (16 x 8n, row-major at a, stride lda) * B (8n x 16), B row-major at b (stride ldb)
// or, with BT, B^T stored row-major (16 x 8n) at b.
template <bool kATrans, bool kBTrans>
__device__ __forceinline__ void mma_16x16(FragC& acc, const float* a, int lda, const float* b,
                                          int ldb, int kdim) {
  using FA = std::conditional_t<kATrans, FragAT, FragA>;
  using FB = std::conditional_t<kBTrans, FragBT, FragB>;
#pragma unroll 4
  for (int kk = 0; kk < kdim; kk += 8) {
    FA fa;
    FB fb;
    wmma::load_matrix_sync(fa, kATrans ? a + kk * lda : a + kk, lda);
    wmma::load_matrix_sync(fb, kBTrans ? b + kk : b + kk * ldb, ldb);
    to_tf32(fa);
    to_tf32(fb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
}

// The kernels are compiled for a padded head size kD (64 or 128) that K and V both fit in:
// shared tiles are kD wide (zeros past K or V), and all index arithmetic is by constants.
struct ChunkDims {
  int D;   // 64 or 128
  int NC;  // chunks per sequence
};

ChunkDims chunk_dims(int K, int V, int T) {
  return ChunkDims{std::max(K, V) <= 64 ? 64 : 128, (T + kC - 1) / kC};
}

// Running sums of the log decays down the rows of sG (kC x KP): G = cumsum(g) inside the chunk.
// One thread per column; the column is read in batches of 16 before the dependent adds.
template <int KP>
__device__ void cumsum_rows(float* sG) {
  constexpr int ldk = KP + 4;
  __syncthreads();
  for (int c = threadIdx.x; c < KP; c += blockDim.x) {
    float acc = 0.f;
#pragma unroll
    for (int i0 = 0; i0 < kC; i0 += 16) {
      float x[16];
#pragma unroll
      for (int u = 0; u < 16; ++u) x[u] = sG[(i0 + u) * ldk + c];
#pragma unroll
      for (int u = 0; u < 16; ++u) {
        acc += x[u];
        sG[(i0 + u) * ldk + c] = acc;
      }
    }
  }
  __syncthreads();
}

// Scalar gates (and none): one log decay per token, broadcast over the K columns of sG.
// `g_row` holds thread i's token value (i < kC), loaded by the caller.
template <int KP>
__device__ void broadcast_scalar_gates(float* sG, int K, float g_row_mine) {
  constexpr int ldk = KP + 4;
  __shared__ float sg[kC];
  if (threadIdx.x < kC) sg[threadIdx.x] = g_row_mine;
  __syncthreads();
  for (int e = threadIdx.x; e < kC * KP; e += blockDim.x) {
    const int i = e / KP, c = e % KP;
    sG[i * ldk + c] = c < K ? sg[i] : 0.f;
  }
}

// Per-token scalar of row tid of a chunk (beta, or the scalar gate), 0 outside the chunk.
template <class Ti>
__device__ __forceinline__ float token_scalar(const Ti* x, const Params<Ti>& p, int b, int h,
                                              int t0, int L) {
  const int i = threadIdx.x;
  return (x && i < L) ? ld(x + p.tok(b, t0 + i, h)) : 0.f;
}

// ---------------------------------------------------------------------------------------------
// What the intra kernel hands the state kernel, per chunk: W = T (exp(G) o k), U = T v and
// Gq = scale q o exp(G), Kd = k o exp(G_last - G) ([B,T,H,K] / [B,T,H,V], type Ti); A_qk
// (fp32, [B*H][NC][kC][kC], lower triangle incl. diagonal) and exp(G_last) (fp32, [B*H][NC][K]).
template <class Ti>
struct ChunkBuffers {
  Ti *W, *U, *Gq, *Kd;
  float *Aqk, *EgL;
};

// intra kernel, persistent: each block walks (chunk, batch*head) items. With kPre (bf16 rows
// of whole vectors) the next item's q, k, g, v are loaded into registers while the current
// one is computed. Shared memory (floats): sK, sQ (kC x max(ldk, kLdA): later Tinv), sG
// (kC x ldk), sAkk, sAqk (kC x kLdA), sX (80 x ldk; later sV, kC x ldv), sBeta (kC).
template <class Ti, bool kPre, int kD, int kNT>
__global__ void __launch_bounds__(kNT, 1)
    chunk_intra_kernel(Params<Ti> p, ChunkDims cd, ChunkBuffers<Ti> out) {
  extern __shared__ __align__(128) float smem[];
  constexpr int KP = kD, VP = kD, ldk = kD + 4, ldv = kD + 4, kNW = kNT / 32;
  constexpr int kSlots = (kC * kD / detail::kVecWidth<Ti> + kNT - 1) / kNT;
  float* sK = smem;
  float* sQ = sK + kC * ldk;
  float* sG = sQ + kC * max(ldk, kLdA);
  float* sAkk = sG + kC * ldk;
  float* sAqk = sAkk + kC * kLdA;
  float* sX = sAqk + kC * kLdA;
  float* sBeta = sX + max(80 * ldk, kC * ldv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  const bool per_channel = p.gate == GateKind::kPerChannel;
  const int n_items = cd.NC * p.B * p.H;
  struct Item {
    int c, bh, b, h, t0, L;
  };
  auto item_of = [&](int it) {
    Item x;
    x.c = it % cd.NC;
    x.bh = it / cd.NC;
    x.b = x.bh / p.H;
    x.h = x.bh % p.H;
    x.t0 = x.c * kC;
    x.L = min(kC, p.T - x.t0);
    return x;
  };
  auto kspec = [&](const Item& x) { return RowsSpec{p.qk(x.b, x.t0, x.h), rs_k, x.L, p.K, 0}; };
  auto vspec = [&](const Item& x) { return RowsSpec{p.vo(x.b, x.t0, x.h), rs_v, x.L, p.V, 0}; };
  RowsPrefetch<Ti, kC, KP, kSlots> pq, pk, pg, pv;
  float beta_r = 0.f, g_r = 0.f;
  auto issue_qkg = [&](const Item& x) {
    pq.issue(p.q, kspec(x));
    pk.issue(p.k, kspec(x));
    if (per_channel) pg.issue(p.g, kspec(x));
    beta_r = token_scalar(p.beta, p, x.b, x.h, x.t0, x.L);
    if (!per_channel) g_r = token_scalar(p.g, p, x.b, x.h, x.t0, x.L);
  };
  if (kPre && int(blockIdx.x) < n_items) {
    issue_qkg(item_of(blockIdx.x));
    pv.issue(p.v, vspec(item_of(blockIdx.x)));
  }

  for (int it = blockIdx.x; it < n_items; it += gridDim.x) {
    const Item x = item_of(it);
    const int c = x.c, bh = x.bh, b = x.b, h = x.h, t0 = x.t0, L = x.L;
    const int next = it + gridDim.x;
    __syncthreads();  // the previous item is done with shared memory
    if constexpr (kPre) {
      pk.commit(sK, ldk, kspec(x));
      pq.commit(sQ, ldk, kspec(x));
      if (per_channel) pg.commit(sG, ldk, kspec(x));
    } else {
      detail::load_rows<Ti, kC, KP>(sK, ldk, p.k, kspec(x));
      detail::load_rows<Ti, kC, KP>(sQ, ldk, p.q, kspec(x));
      if (per_channel) detail::load_rows<Ti, kC, KP>(sG, ldk, p.g, kspec(x));
      beta_r = token_scalar(p.beta, p, b, h, t0, L);
      if (!per_channel) g_r = token_scalar(p.g, p, b, h, t0, L);
    }
    if (threadIdx.x < kC) sBeta[threadIdx.x] = beta_r;
    if (!per_channel) broadcast_scalar_gates<KP>(sG, p.K, g_r);
    if (kPre && next < n_items) issue_qkg(item_of(next));
    cumsum_rows<KP>(sG);  // syncs before and after
    // For the state kernel: Gq = scale q o exp(G), Kd = k o exp(G_last - G), exp(G_last) (rows
    // past L carry g = 0, so G_last = G[kC-1]).
    {
      const float* Gl = sG + (kC - 1) * ldk;
      detail::store_rows_fn(out.Gq, p.qk(b, t0, h), rs_k, 0, L, p.K, [&](int i, int d) {
        return p.scale * sQ[i * ldk + d] * __expf(sG[i * ldk + d]);
      });
      detail::store_rows_fn(out.Kd, p.qk(b, t0, h), rs_k, 0, L, p.K, [&](int i, int d) {
        return sK[i * ldk + d] * __expf(Gl[d] - sG[i * ldk + d]);
      });
      for (int d = threadIdx.x; d < p.K; d += blockDim.x)
        out.EgL[(int64_t(bh) * cd.NC + c) * p.K + d] = __expf(Gl[d]);
    }

    // Diagonal 16 x 16 blocks, elementwise with exp(G_i - G_j), j <= i.
    for (int w = threadIdx.x; w < 4 * kBS * kBS; w += blockDim.x) {
      const int I = w / (kBS * kBS), i = I * kBS + (w / kBS) % kBS, j = I * kBS + w % kBS;
      float akk = 0.f, aqk = 0.f;
      if (j <= i) {
        const float4 *Gi = reinterpret_cast<const float4*>(sG + i * ldk),
                     *Gj = reinterpret_cast<const float4*>(sG + j * ldk),
                     *ki = reinterpret_cast<const float4*>(sK + i * ldk),
                     *kj = reinterpret_cast<const float4*>(sK + j * ldk),
                     *qi = reinterpret_cast<const float4*>(sQ + i * ldk);
        for (int d = 0; d < KP / 4; ++d) {
          const float4 gi = Gi[d], gj = Gj[d], a = ki[d], bq = qi[d], kk = kj[d];
          const float x0 = kk.x * __expf(gi.x - gj.x), x1 = kk.y * __expf(gi.y - gj.y);
          const float x2 = kk.z * __expf(gi.z - gj.z), x3 = kk.w * __expf(gi.w - gj.w);
          akk += a.x * x0 + a.y * x1 + a.z * x2 + a.w * x3;
          aqk += bq.x * x0 + bq.y * x1 + bq.z * x2 + bq.w * x3;
        }
      }
      sAkk[i * kLdA + j] = akk;
      sAqk[i * kLdA + j] = aqk;
    }
    // Off-diagonal blocks (I, J < I), one row block at a time: sX holds Xk = k_i exp(G_i - G_r)
    // and Xq = q_i exp(G_i - G_r) for the block's 16 rows, then Y = k_j exp(G_r - G_j), j < r.
    for (int I = 1; I < 4; ++I) {
      const int r = I * kBS;
      __syncthreads();  // sX free again
      for (int e = threadIdx.x; e < (2 * kBS + r) * KP; e += blockDim.x) {
        const int row = e / KP, d = e % KP;
        float x;
        if (row < 2 * kBS) {
          const int i = r + row % kBS;
          x = (row < kBS ? sK : sQ)[i * ldk + d] * __expf(sG[i * ldk + d] - sG[r * ldk + d]);
        } else {
          const int j = row - 2 * kBS;
          x = sK[j * ldk + d] * __expf(sG[r * ldk + d] - sG[j * ldk + d]);
        }
        sX[row * ldk + d] = x;
      }
      __syncthreads();
      if (warp < 2 * I) {  // tile (I, J) of A_kk (warp < I) or A_qk
        const int J = warp % I, which = warp / I;
        FragC acc;
        wmma::fill_fragment(acc, 0.f);
        mma_16x16<false, true>(acc, sX + which * kBS * ldk, ldk, sX + (2 * kBS + J * kBS) * ldk,
                               ldk, KP);
        wmma::store_matrix_sync((which ? sAqk : sAkk) + r * kLdA + J * kBS, acc, kLdA,
                                wmma::mem_row_major);
      }
    }
    __syncthreads();
    // Masks and scales: A = Diag(beta) A_kk strictly lower; A_qk = scale * lower incl. diagonal.
    for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) {
      const int i = e / kC, j = e % kC;
      sAkk[i * kLdA + j] = j < i ? sBeta[i] * sAkk[i * kLdA + j] : 0.f;
      const float aq = j <= i ? p.scale * sAqk[i * kLdA + j] : 0.f;
      sAqk[i * kLdA + j] = aq;
      out.Aqk[(int64_t(bh) * cd.NC + c) * kC * kC + e] = aq;
    }
    // Tinv = (I + A)^-1, unit lower triangular, into sQ (q is no longer needed).
    float* sT = sQ;
    for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) sT[(e / kC) * kLdA + e % kC] = 0.f;
    __syncthreads();
    if (warp < 4 && lane < kBS) {  // diagonal blocks: forward substitution, lane = column
      const int r = warp * kBS;
      float x[kBS];
#pragma unroll
      for (int i = 0; i < kBS; ++i) {
        float acc = (i == lane) ? 1.f : 0.f;
#pragma unroll
        for (int j = 0; j < i; ++j) acc -= sAkk[(r + i) * kLdA + r + j] * x[j];
        x[i] = acc;
        sT[(r + i) * kLdA + r + lane] = acc;
      }
    }
    // Off-diagonal: T_IJ = -T_II sum_{M=J}^{I-1} A_IM T_MJ, row blocks in order.
    float* sP = sAqk;  // scratch (A_qk already stored)
    for (int I = 1; I < 4; ++I) {
      const int r = I * kBS;
      __syncthreads();
      for (int e = threadIdx.x; e < I * kBS * kBS; e += blockDim.x) {
        const int J = e / (kBS * kBS), i = (e / kBS) % kBS, jc = e % kBS;
        float acc = 0.f;
        for (int m = J * kBS; m < r; ++m)
          acc += sAkk[(r + i) * kLdA + m] * sT[m * kLdA + J * kBS + jc];
        sP[(J * kBS + i) * kLdA + jc] = acc;
      }
      __syncthreads();
      for (int e = threadIdx.x; e < I * kBS * kBS; e += blockDim.x) {
        const int J = e / (kBS * kBS), i = (e / kBS) % kBS, jc = e % kBS;
        float acc = 0.f;
        for (int m = 0; m <= i; ++m)
          acc -= sT[(r + i) * kLdA + r + m] * sP[(J * kBS + m) * kLdA + jc];
        sT[(r + i) * kLdA + J * kBS + jc] = acc;
      }
    }
    // Right-hand sides: Rk = beta exp(G) o k (in sK), Rv = beta v (sV over sX).
    float* sV = sX;
    for (int e = threadIdx.x; e < kC * KP; e += blockDim.x) {
      const int i = e / KP, d = e % KP;
      sK[i * ldk + d] *= sBeta[i] * __expf(sG[i * ldk + d]);
    }
    if constexpr (kPre) {
      pv.commit(sV, ldv, vspec(x));
      if (next < n_items) pv.issue(p.v, vspec(item_of(next)));
    } else {
      detail::load_rows<Ti, kC, VP>(sV, ldv, p.v, vspec(x));
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kC * VP; e += blockDim.x)
      sV[(e / VP) * ldv + e % VP] *= sBeta[e / VP];
    __syncthreads();
    // W = Tinv Rk into sG, U = Tinv Rv into sAkk.. (the two C x C matrices are done).
    float* sW = sG;
    float* sU = sAkk;
    constexpr int tk = KP / kBS, tv = VP / kBS, ntiles = 4 * (tk + tv);
    for (int tile = warp; tile < ntiles; tile += kNW) {
      const bool is_w = tile < 4 * tk;
      const int t = is_w ? tile : tile - 4 * tk, nt = is_w ? tk : tv;
      const int I = t / nt, N = t % nt;
      const float* rhs = is_w ? sK : sV;
      const int ld_rhs = is_w ? ldk : ldv;
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
      mma_16x16<false, false>(acc, sT + I * kBS * kLdA, kLdA, rhs + N * kBS, ld_rhs, (I + 1) * kBS);
      wmma::store_matrix_sync((is_w ? sW + I * kBS * ldk : sU + I * kBS * ldv) + N * kBS, acc,
                              is_w ? ldk : ldv, wmma::mem_row_major);
    }
    __syncthreads();
    detail::store_rows(out.W, p.qk(b, t0, h), rs_k, 0, L, p.K, sW, ldk);
    detail::store_rows(out.U, p.vo(b, t0, h), rs_v, 0, L, p.V, sU, ldv);
  }  // items
}

size_t intra_smem(const ChunkDims& cd) {
  const int ld = cd.D + 4;
  return (2 * kC * ld + kC * std::max(ld, kLdA) + 2 * kC * kLdA + std::max(80 * ld, kC * ld) + kC) *
         sizeof(float);
}

// ---------------------------------------------------------------------------------------------
// state kernel, BV columns of V per block, walking the chunks:
//   V' = U - W S;  O = Gq S + A_qk V';  S <- exp(G_last) o S + Kd^T V'.
// With kPre (bf16 rows of whole vectors) the next chunk's W, Gq, Kd, U tile, A_qk and
// exp(G_last) are loaded into registers while the current chunk is computed. Shared memory
// (floats): sS (KP x ldb), sW, sQ (Gq), sK (Kd) (kC x ldk each), sO, sU (V') (kC x ldb each),
// sA (kC x kLdA), sEg (KP).
template <int BV, class Ti, bool kPre, int kD>
__global__ void __launch_bounds__(kThreads, 1)
    chunk_state_kernel(Params<Ti> p, ChunkDims cd, ChunkBuffers<Ti> in) {
  extern __shared__ __align__(128) float smem[];
  constexpr int ldb = BV + 4;
  constexpr int kUSlots = (BV * kC / detail::kVecWidth<Ti> + kThreads - 1) / kThreads;
  constexpr int kKSlots = (kC * kD / detail::kVecWidth<Ti> + kThreads - 1) / kThreads;
  constexpr int KP = kD, ldk = kD + 4;
  float* sS = smem;
  float* sW = sS + KP * ldb;
  float* sQ = sW + kC * ldk;
  float* sK = sQ + kC * ldk;
  float* sO = sK + kC * ldk;
  float* sU = sO + kC * ldb;
  float* sA = sU + kC * ldb;
  float* sEg = sA + kC * kLdA;
  const int bh = blockIdx.y, v0 = blockIdx.x * BV;
  const int b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x / 32;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  const int64_t state0 = int64_t(bh) * p.K * p.V;
  const int vcols = min(BV, p.V - v0);
  auto len = [&](int c) { return min(kC, p.T - c * kC); };
  auto kspec = [&](int c) { return RowsSpec{p.qk(b, c * kC, h), rs_k, len(c), p.K, 0}; };
  auto uspec = [&](int c) { return RowsSpec{p.vo(b, c * kC, h), rs_v, len(c), p.V, v0}; };
  auto aspec = [&](int c) { return RowsSpec{(int64_t(bh) * cd.NC + c) * kC * kC, kC, kC, kC, 0}; };
  auto eg_of = [&](int c) {
    const int d = threadIdx.x;
    return d < p.K ? in.EgL[(int64_t(bh) * cd.NC + c) * p.K + d] : 1.f;
  };
  RowsPrefetch<Ti, kC, KP, kKSlots> pw, pq, pk;
  RowsPrefetch<Ti, kC, BV, kUSlots> pu;
  RowsPrefetch<float, kC, kC, (kC * kC / 4 + kThreads - 1) / kThreads> pa;
  float eg_r = 1.f;
  auto issue = [&](int c) {
    pw.issue(in.W, kspec(c));
    pq.issue(in.Gq, kspec(c));
    pk.issue(in.Kd, kspec(c));
    pu.issue(in.U, uspec(c));
    pa.issue(in.Aqk, aspec(c));
    eg_r = eg_of(c);
  };

  for (int e = threadIdx.x; e < KP * BV; e += blockDim.x) {
    const int i = e / BV, j = e % BV;
    sS[i * ldb + j] =
        (p.h0 && i < p.K && j < vcols) ? p.h0[state0 + int64_t(i) * p.V + v0 + j] : 0.f;
  }
  if (kPre) issue(0);
  for (int c = 0; c < cd.NC; ++c) {
    const int t0 = c * kC, L = len(c);
    __syncthreads();  // the previous chunk is done with every buffer
    if constexpr (kPre) {
      pw.commit(sW, ldk, kspec(c));
      pq.commit(sQ, ldk, kspec(c));
      pk.commit(sK, ldk, kspec(c));
      pu.commit(sU, ldb, uspec(c));
      pa.commit(sA, kLdA, aspec(c));
    } else {
      detail::load_rows<Ti, kC, KP>(sW, ldk, in.W, kspec(c));
      detail::load_rows<Ti, kC, KP>(sQ, ldk, in.Gq, kspec(c));
      detail::load_rows<Ti, kC, KP>(sK, ldk, in.Kd, kspec(c));
      detail::load_rows<Ti, kC, BV>(sU, ldb, in.U, uspec(c));
      detail::load_rows<float, kC, kC>(sA, kLdA, in.Aqk, aspec(c));
      eg_r = eg_of(c);
    }
    if (threadIdx.x < KP) sEg[threadIdx.x] = eg_r;
    if (kPre && c + 1 < cd.NC) issue(c + 1);
    __syncthreads();
    // V' = U - W S (each warp owns whole tiles of sU, updated in place).
    constexpr int tvb = BV / kBS;
    for (int tile = warp; tile < 4 * tvb; tile += kWarps) {
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::load_matrix_sync(acc, sU + I * kBS * ldb + N * kBS, ldb, wmma::mem_row_major);
#pragma unroll 4
      for (int kk = 0; kk < KP; kk += 8) {
        FragA fa;
        FragB fb;
        wmma::load_matrix_sync(fa, sW + I * kBS * ldk + kk, ldk);
        wmma::load_matrix_sync(fb, sS + kk * ldb + N * kBS, ldb);
#pragma unroll
        for (int e = 0; e < fa.num_elements; ++e) fa.x[e] = wmma::__float_to_tf32(-fa.x[e]);
        to_tf32(fb);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(sU + I * kBS * ldb + N * kBS, acc, ldb, wmma::mem_row_major);
    }
    __syncthreads();
    // O = Gq S + A_qk V' (A_qk is zero above the diagonal).
    for (int tile = warp; tile < 4 * tvb; tile += kWarps) {
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
      mma_16x16<false, false>(acc, sQ + I * kBS * ldk, ldk, sS + N * kBS, ldb, KP);
      mma_16x16<false, false>(acc, sA + I * kBS * kLdA, kLdA, sU + N * kBS, ldb, (I + 1) * kBS);
      wmma::store_matrix_sync(sO + I * kBS * ldb + N * kBS, acc, ldb, wmma::mem_row_major);
    }
    __syncthreads();
    detail::store_rows(p.o, p.vo(b, t0, h), rs_v, v0, L, vcols, sO, ldb);
    for (int e = threadIdx.x; e < KP * BV; e += blockDim.x)
      sS[(e / BV) * ldb + e % BV] *= sEg[e / BV];
    __syncthreads();
    // S += Kd^T V' (Kd^T read column-major from sK).
    for (int tile = warp; tile < (KP / kBS) * tvb; tile += kWarps) {
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::load_matrix_sync(acc, sS + I * kBS * ldb + N * kBS, ldb, wmma::mem_row_major);
      mma_16x16<true, false>(acc, sK + I * kBS, ldk, sU + N * kBS, ldb, kC);
      wmma::store_matrix_sync(sS + I * kBS * ldb + N * kBS, acc, ldb, wmma::mem_row_major);
    }
  }
  __syncthreads();
  if (p.ht) {
    for (int e = threadIdx.x; e < p.K * vcols; e += blockDim.x) {
      const int i = e / vcols, j = e % vcols;
      p.ht[state0 + int64_t(i) * p.V + v0 + j] = sS[i * ldb + j];
    }
  }
}

template <int BV>
size_t state_smem(const ChunkDims& cd) {
  constexpr int ldb = BV + 4;
  const int ld = cd.D + 4;
  return (cd.D * ldb + 3 * kC * ld + 2 * kC * ldb + kC * kLdA + cd.D) * sizeof(float);
}

int max_smem_optin() {
  int dev = 0, v = 0;
  KIMI_CUDA_CHECK(cudaGetDevice(&dev));
  KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return v;
}

int sm_count() {
  int dev = 0, v = 0;
  KIMI_CUDA_CHECK(cudaGetDevice(&dev));
  KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
  return v;
}

// Register prefetch: bf16 rows that are whole 16-byte vectors (K, V multiples of 8).
template <class Ti>
bool use_prefetch(const Params<Ti>& p) {
  return sizeof(Ti) == 2 && detail::vec_ok<Ti>(p.K, 0) && detail::vec_ok<Ti>(p.V, 0);
}

template <int BV, class Ti, bool kPre, int kD>
void launch_state_as(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                     cudaStream_t stream) {
  const size_t smem = state_smem<BV>(cd);
  KIMI_CUDA_REQUIRE(smem <= size_t(max_smem_optin()), "chunk delta rule: shared memory");
  KIMI_CUDA_CHECK(cudaFuncSetAttribute(chunk_state_kernel<BV, Ti, kPre, kD>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned(detail::ceil_div(p.V, BV)), unsigned(p.B * p.H));
  chunk_state_kernel<BV, Ti, kPre, kD><<<grid, kThreads, smem, stream>>>(p, cd, buf);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <int BV, class Ti>
void launch_state(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                  cudaStream_t stream) {
  if constexpr (sizeof(Ti) == 2) {
    if (use_prefetch(p)) {
      if (cd.D == 64) return launch_state_as<BV, Ti, true, 64>(p, cd, buf, stream);
      return launch_state_as<BV, Ti, true, 128>(p, cd, buf, stream);
    }
  }
  if (cd.D == 64) return launch_state_as<BV, Ti, false, 64>(p, cd, buf, stream);
  launch_state_as<BV, Ti, false, 128>(p, cd, buf, stream);
}

template <class Ti, bool kPre, int kD, int kNT>
void launch_intra_as(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                     cudaStream_t stream) {
  const size_t smem = intra_smem(cd);
  auto* kernel = chunk_intra_kernel<Ti, kPre, kD, kNT>;
  KIMI_CUDA_REQUIRE(smem <= size_t(max_smem_optin()), "chunk delta rule: shared memory");
  KIMI_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  int per_sm = 0;
  KIMI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kNT, smem));
  const int64_t items = int64_t(cd.NC) * p.B * p.H;
  const int64_t grid = std::min<int64_t>(items, int64_t(std::max(per_sm, 1)) * sm_count());
  kernel<<<unsigned(grid), kNT, smem, stream>>>(p, cd, buf);
  KIMI_CUDA_CHECK_LAUNCH();
}

// Threads per intra block: 512 (16 warps hide more latency), or 256 when the environment
// says KIMI_CUDA_CHUNK_THREADS=256 (kept to compare the two in benchmarks).
int intra_threads() {
  const char* e = std::getenv("KIMI_CUDA_CHUNK_THREADS");
  return (e && std::atoi(e) == 256) ? 256 : 512;
}

template <class Ti, bool kPre, int kD>
void launch_intra_nt(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                     cudaStream_t stream) {
  if (intra_threads() == 256) return launch_intra_as<Ti, kPre, kD, 256>(p, cd, buf, stream);
  launch_intra_as<Ti, kPre, kD, 512>(p, cd, buf, stream);
}

template <class Ti>
void launch_intra(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                  cudaStream_t stream) {
  if constexpr (sizeof(Ti) == 2) {
    if (use_prefetch(p)) {
      if (cd.D == 64) return launch_intra_nt<Ti, true, 64>(p, cd, buf, stream);
      return launch_intra_nt<Ti, true, 128>(p, cd, buf, stream);
    }
  }
  if (cd.D == 64) return launch_intra_nt<Ti, false, 64>(p, cd, buf, stream);
  launch_intra_nt<Ti, false, 128>(p, cd, buf, stream);
}

}  // namespace

template <class Ti>
void delta_rule_chunk_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                          const Ti* g, const Ti* beta, const float* h0, Ti* o, float* ht,
                          cudaStream_t stream, const ChunkFwdEvents* events) {
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.T >= 0 && d.H >= 0 && d.K > 0 && d.V > 0,
                    "chunk delta rule: bad dims");
  KIMI_CUDA_REQUIRE((d.gate == GateKind::kNone) == (g == nullptr),
                    "delta rule: g must be given exactly when the gate kind is not kNone");
  KIMI_CUDA_REQUIRE(beta != nullptr, "delta rule: beta is required");
  KIMI_CUDA_REQUIRE(d.K <= 128 && d.V <= 128, "chunk delta rule: needs K <= 128 and V <= 128");
  if (d.B * d.H == 0) return;
  if (d.T == 0) {
    delta_rule_recurrent_fwd(d, q, k, v, g, beta, h0, o, ht, stream);  // ht = h0
    return;
  }
  Params<Ti> p{};
  p.B = int(d.B);
  p.T = int(d.T);
  p.H = int(d.H);
  p.K = int(d.K);
  p.V = int(d.V);
  p.gate = d.gate;
  p.scale = float(d.scale);
  p.q = q;
  p.k = k;
  p.v = v;
  p.g = g;
  p.beta = beta;
  p.h0 = h0;
  p.o = o;
  p.ht = ht;
  const ChunkDims cd = chunk_dims(p.K, p.V, p.T);
  const int64_t BTH = d.B * d.T * d.H, BH = d.B * d.H;
  Buffer W(size_t(BTH * d.K) * sizeof(Ti)), U(size_t(BTH * d.V) * sizeof(Ti));
  Buffer Gq(size_t(BTH * d.K) * sizeof(Ti)), Kd(size_t(BTH * d.K) * sizeof(Ti));
  Buffer A(size_t(BH * cd.NC * kC * kC) * sizeof(float)),
      EgL(size_t(BH * cd.NC * d.K) * sizeof(float));
  const ChunkBuffers<Ti> buf{W.as<Ti>(),  U.as<Ti>(),    Gq.as<Ti>(),
                             Kd.as<Ti>(), A.as<float>(), EgL.as<float>()};
  if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->start, stream));
  launch_intra(p, cd, buf, stream);
  if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->mid, stream));
  // Fewer than ~2 blocks per multiprocessor with 64-wide V tiles: use 32-wide tiles.
  if (BH * detail::ceil_div(d.V, 64) >= 2 * sm_count())
    launch_state<64>(p, cd, buf, stream);
  else
    launch_state<32>(p, cd, buf, stream);
  if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->end, stream));
}

template void delta_rule_chunk_fwd<float>(const RecurrenceDims&, const float*, const float*,
                                          const float*, const float*, const float*, const float*,
                                          float*, float*, cudaStream_t, const ChunkFwdEvents*);
template void delta_rule_chunk_fwd<__nv_bfloat16>(const RecurrenceDims&, const __nv_bfloat16*,
                                                  const __nv_bfloat16*, const __nv_bfloat16*,
                                                  const __nv_bfloat16*, const __nv_bfloat16*,
                                                  const float*, __nv_bfloat16*, float*,
                                                  cudaStream_t, const ChunkFwdEvents*);

}  // namespace kimi::cuda
