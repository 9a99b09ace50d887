// Chunkwise delta rule forward, the intra kernel specialised for a scalar gate (GDN: one log
// decay per token and head) or no gate (DeltaNet); included by delta_rule_chunk_intra.cu only.
// Same outputs as the per-channel kernel there (W, U, Gq, Kd, A_qk, exp(G_last)), but with one
// decay per token the decays factor out of the products:
//   A_kk[i,j] = beta_i (k_i . k_j) exp(G_i - G_j),  A_qk[i,j] = scale (q_i . k_j) exp(G_i - G_j),
// so both are one plain 64 x 64 Gram product on the tensor cores (lower tiles only) followed by
// one elementwise pass with one exp per pair; exp(G), exp(G_last - G) are per-row scalars.
// Without a gate every decay is 1 and no exp is taken. This removes what made the per-channel
// kernel latency-bound for these gates (notes/gpu.md): the K-column cumulative sums, the
// per-channel exp passes that built the decayed operands of the off-diagonal blocks, and the
// 16 x 16 diagonal blocks done elementwise with FMAs.
#pragma once

#include "core/cuda/delta_rule/delta_rule_chunk.cuh"

namespace kimi::cuda::detail::chunk {
namespace {

// Shared memory (floats): sK, sQ (kC x max(ldk, kLdA): later Tinv), sAkk, sAqk (kC x kLdA; the
// two together later hold U, kC x ldv), sV (kC x ldv), sW (kC x ldk), then per row: G, beta,
// exp(G), exp(G_last - G).
inline size_t intra_scalar_smem(const ChunkDims& cd) {
  const int ld = cd.D + 4;
  return (3 * kC * ld + kC * std::max(ld, kLdA) + 2 * kC * kLdA + 4 * kC) * sizeof(float);
}

// kGated: scalar gate (else none). kPre: bf16 rows of whole vectors, the next item's q, k, v,
// beta, g loaded into registers while the current item is computed (persistent blocks).
template <class Ti, bool kPre, int kD, int kNT, bool kGated>
__global__ void __launch_bounds__(kNT, 1)
    chunk_intra_scalar_kernel(Params<Ti> p, ChunkDims cd, ChunkBuffers<Ti> out) {
  extern __shared__ __align__(128) float smem[];
  constexpr int KP = kD, VP = kD, ldk = kD + 4, ldv = kD + 4, kNW = kNT / 32;
  constexpr int kSlots = (kC * kD / detail::kVecWidth<Ti> + kNT - 1) / kNT;
  static_assert(kC * ldv <= 2 * kC * kLdA, "U must fit over sAkk + sAqk");
  float* sK = smem;
  float* sQ = sK + kC * ldk;
  float* sAkk = sQ + kC * max(ldk, kLdA);
  float* sAqk = sAkk + kC * kLdA;
  float* sV = sAqk + kC * kLdA;
  float* sW = sV + kC * ldv;
  float* sG = sW + kC * ldk;
  float* sBeta = sG + kC;
  float* sEq = sBeta + kC;  // exp(G_i)
  float* sEk = sEq + kC;    // exp(G_last - G_i)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
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
  // Per-token scalar of row tid (beta or g), 0 past the chunk (so G_last = G[kC-1]).
  auto tok = [&](const Ti* src, const Item& x) {
    const int i = threadIdx.x;
    return (src && i < x.L) ? ld(src + p.tok(x.b, x.t0 + i, x.h)) : 0.f;
  };
  RowsPrefetch<Ti, kC, KP, kSlots> pq, pk, pv;
  float beta_r = 0.f, g_r = 0.f;
  auto issue = [&](const Item& x) {
    pq.issue(p.q, kspec(x));
    pk.issue(p.k, kspec(x));
    pv.issue(p.v, vspec(x));
    beta_r = tok(p.beta, x);
    if (kGated) g_r = tok(p.g, x);
  };
  if (kPre && int(blockIdx.x) < n_items) issue(item_of(blockIdx.x));

  for (int it = blockIdx.x; it < n_items; it += gridDim.x) {
    const Item x = item_of(it);
    const int c = x.c, bh = x.bh, b = x.b, h = x.h, t0 = x.t0, L = x.L;
    const int next = it + gridDim.x;
    __syncthreads();  // the previous item is done with shared memory
    if constexpr (kPre) {
      pk.commit(sK, ldk, kspec(x));
      pq.commit(sQ, ldk, kspec(x));
      pv.commit(sV, ldv, vspec(x));
    } else {
      detail::load_rows<Ti, kC, KP>(sK, ldk, p.k, kspec(x));
      detail::load_rows<Ti, kC, KP>(sQ, ldk, p.q, kspec(x));
      detail::load_rows<Ti, kC, VP>(sV, ldv, p.v, vspec(x));
      beta_r = tok(p.beta, x);
      if (kGated) g_r = tok(p.g, x);
    }
    if (threadIdx.x < kC) {
      sBeta[threadIdx.x] = beta_r;
      sG[threadIdx.x] = g_r;
    }
    if (kPre && next < n_items) issue(item_of(next));
    __syncthreads();
    // Warp 0: G = cumsum(g) (two tokens per lane, shuffle scan), exp(G), exp(G_last - G).
    // Warps 1..: the lower 16 x 16 tiles of K K^T (10) and Q K^T (10) on the tensor cores.
    if (warp == 0) {
      if constexpr (kGated) {
        const float a = sG[2 * lane], s = a + sG[2 * lane + 1];
        float incl = s;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const float y = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += y;
        }
        const float g0 = incl - s + a, g1 = incl;
        const float gl = __shfl_sync(0xffffffffu, incl, 31);
        sG[2 * lane] = g0;
        sG[2 * lane + 1] = g1;
        sEq[2 * lane] = __expf(g0);
        sEq[2 * lane + 1] = __expf(g1);
        sEk[2 * lane] = __expf(gl - g0);
        sEk[2 * lane + 1] = __expf(gl - g1);
      } else {
        sEq[2 * lane] = sEq[2 * lane + 1] = 1.f;
        sEk[2 * lane] = sEk[2 * lane + 1] = 1.f;
      }
    }
    for (int t = (kNW > 1 ? warp - 1 : 0); t >= 0 && t < 20; t += (kNW > 1 ? kNW - 1 : 1)) {
      const int which = t / 10, u = t % 10;  // u -> lower tile (I, J), J <= I
      const int I = u < 1 ? 0 : u < 3 ? 1 : u < 6 ? 2 : 3, J = u - I * (I + 1) / 2;
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
      mma_16x16<false, true>(acc, (which ? sQ : sK) + I * kBS * ldk, ldk, sK + J * kBS * ldk, ldk,
                             KP);
      wmma::store_matrix_sync((which ? sAqk : sAkk) + I * kBS * kLdA + J * kBS, acc, kLdA,
                              wmma::mem_row_major);
    }
    __syncthreads();
    // For the state kernel: Gq = scale q exp(G_i), Kd = k exp(G_last - G_i), exp(G_last).
    detail::store_rows_fn(out.Gq, p.qk(b, t0, h), rs_k, 0, L, p.K,
                          [&](int i, int d) { return p.scale * sQ[i * ldk + d] * sEq[i]; });
    detail::store_rows_fn(out.Kd, p.qk(b, t0, h), rs_k, 0, L, p.K,
                          [&](int i, int d) { return sK[i * ldk + d] * sEk[i]; });
    for (int d = threadIdx.x; d < p.K; d += blockDim.x)
      out.EgL[(int64_t(bh) * cd.NC + c) * p.K + d] = sEq[kC - 1];
    // Decays, masks and scales: A = Diag(beta) A_kk strictly lower; A_qk = scale * lower incl.
    // the diagonal (exp(G_i - G_j) <= 1 for j <= i: taken as one difference, never a ratio).
    for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) {
      const int i = e / kC, j = e % kC;
      float dec = 1.f;
      if constexpr (kGated) dec = j <= i ? __expf(sG[i] - sG[j]) : 0.f;
      sAkk[i * kLdA + j] = j < i ? sBeta[i] * sAkk[i * kLdA + j] * dec : 0.f;
      const float aq = j <= i ? p.scale * sAqk[i * kLdA + j] * dec : 0.f;
      sAqk[i * kLdA + j] = aq;
      out.Aqk[(int64_t(bh) * cd.NC + c) * kC * kC + e] = aq;
    }
    __syncthreads();  // A done; Gq and Kd stored (sQ and sK are free to change)
    // Tinv = (I + A)^-1 into sQ as in the per-channel kernel; only blocks on or below the
    // diagonal are written, and only those are read below.
    float* sT = sQ;
    unit_lower_inverse_diagonal(sAkk, sT, warp, lane);
    if (warp >= 4) {  // meanwhile: Rk = beta exp(G) o k (in sK), Rv = beta v (in sV)
      for (int e = threadIdx.x - 4 * 32; e < kC * KP; e += blockDim.x - 4 * 32) {
        const int i = e / KP, d = e % KP;
        sK[i * ldk + d] *= sBeta[i] * sEq[i];
        sV[i * ldv + d] *= sBeta[i];
      }
    }
    unit_lower_inverse_below(sAkk, sT, sAqk);  // scratch: A_qk is already stored
    __syncthreads();
    // W = Tinv Rk into sW, U = Tinv Rv over sAkk.. (A_kk and the scratch are done).
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

}  // namespace
}  // namespace kimi::cuda::detail::chunk
