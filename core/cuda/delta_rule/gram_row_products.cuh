// The row-gate products of the chunk backward's B4 split kernel (delta_rule_chunk_bwd_gram.cu;
// not a public API): for scalar gates and none, whose pairwise decays are one number per row
// pair, B4's three products as plain tensor-core GEMMs.
#pragma once

#include "core/cuda/delta_rule/bwd_mma.cuh"
#include "core/cuda/delta_rule/delta_rule_chunk_bwd.cuh"

namespace kimi::cuda::detail::chunk_bwd {

// A scalar gate (GDN) or none (DeltaNet) decays whole rows: Gamma_ij = exp(G_i - G_j) is one
// number per (i, j), so M1 = X1 o Gamma and M2 = X2 o Gamma are formed once (64 x 64 exps
// instead of 64 x 64 x KS) and every product is a plain tensor-core GEMM:
//   Z = M1^T Q + M2^T K,  Y1 = M1 K,  Y2 = M2 K  (no diagonal blocks taken elementwise).
// Three phases through one 64-row buffer (sB and sAQ, contiguous), each followed by its
// elementwise update; Y1 makes dq final.
template <int KS, class Ti>
__device__ void row_gate_products(const Params<Ti>& p, const BwdBuffers<Ti>& bw, const float* sQ,
                                  const float* sK, const float* sG, const float* sdQ, float* sdK,
                                  float* sdG, float* sX1, float* sX2, float* buf, int b, int h,
                                  int t0, int L, int col0, int ncols) {
  constexpr int ld = KS + 4, nks = KS / kBS;
  const int warp = threadIdx.x / 32;
  if (p.gate != GateKind::kNone) {  // sG is zero without a gate: Gamma = 1
    for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) {
      const int i = e / kC, j = e % kC;
      if (j <= i) {
        const float gm = __expf(sG[i * ld] - sG[j * ld]);  // <= 1: G falls along the chunk
        sX1[i * kLdA + j] *= gm;
        sX2[i * kLdA + j] *= gm;
      }
    }
    __syncthreads();
  }
  for (int phase = 0; phase < 3; ++phase) {
    for (int t = warp; t < 4 * nks; t += kNW) {
      const int R = t / nks, N = t % nks, r0 = R * kBS;
      float acc[2][4];
      bwd_mma::zero_16x16(acc);
      if (phase == 0) {  // Z rows of block R: the rows i >= r0 of M1, M2 feed them
        bwd_mma::mma_16x16_bf16<true, false>(acc, sX1 + r0 * kLdA + r0, kLdA,
                                             sQ + r0 * ld + N * kBS, ld, kC - r0);
        bwd_mma::mma_16x16_bf16<true, false>(acc, sX2 + r0 * kLdA + r0, kLdA,
                                             sK + r0 * ld + N * kBS, ld, kC - r0);
      } else {  // Y1 (phase 1) or Y2 (phase 2) rows of block R: columns j < r0 + 16
        bwd_mma::mma_16x16_bf16<false, false>(acc, (phase == 1 ? sX1 : sX2) + r0 * kLdA, kLdA,
                                              sK + N * kBS, ld, r0 + kBS);
      }
      bwd_mma::store_16x16(buf + r0 * ld + N * kBS, ld, acc);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kC * KS; e += blockDim.x) {
      const int m = e / KS, d = e % KS, x = m * ld + d;
      const float v = buf[x];
      if (phase == 0) {
        sdK[x] += v;
        sdG[x] -= sK[x] * v;
      } else if (phase == 1) {
        sdG[x] += sQ[x] * v;
        if (m < L && d < ncols) st(bw.dq + p.qk(b, t0 + m, h) + col0 + d, sdQ[x] + v);
      } else {
        sdK[x] += v;
        sdG[x] += sK[x] * v;
      }
    }
    __syncthreads();
  }
}

}  // namespace kimi::cuda::detail::chunk_bwd
