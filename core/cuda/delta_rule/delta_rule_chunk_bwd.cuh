// Shared by the chunkwise delta-rule backward kernels (not a public API): the workspaces the
// stages hand each other, a block-wide WMMA (TF32) product over shared tiles, the gate loader
// (cumulative log decays inside a chunk) and the launchers of the per-chunk kernels.
// The algorithm (docs/math.md#chunkwise, CPU oracle core/cpu/delta_rule_chunk_bwd.cpp):
//   F1 intra (the forward's kernel): W, U, Gq, Kd, A_qk, exp(G_last) per chunk.
//   F2 fwd_h   (sequential, per head x V tile): h_c (state before chunk c) and V' = U - W h_c.
//   B1 bwd_dh  (sequential backwards, per head x V tile): dh_c (gradient of the state after
//              chunk c), dV' = A_qk^T dO + Kd dh_c, dh_{c-1} = exp(G_last) dh_c + Gq^T dO - W^T
//              dV'.
//   B2 dhv     (per chunk): dGq = dO h^T, dW = -dV' h^T, dKd = V' dh^T, dA_qk = dO V'^T,
//              deL = rowsum(dh o h) (V streamed in tiles, sums in WMMA accumulators).
//   B3 ut_bwd  (per chunk): recomputes A_kk and T = (I + A)^-1; the UT backward (dv, dbeta,
//              dA_kk, dGk).
//   B4 gram    (per chunk x 32 or 64 channels; scalar gates and none: per chunk): the
//              elementwise parts of dq, dk, dg (through Gq, Gk, Kd, exp(G_last)), the backward of
//              the two Gram matrices with pairwise decays (A_qk and A_kk) and the reverse
//              cumulative sum of dG (dg).
#pragma once

#include "core/cuda/delta_rule/delta_rule_chunk.cuh"

namespace kimi::cuda::detail::chunk_bwd {

using namespace kimi::cuda::detail::chunk;

constexpr int kNT = 512;  // threads of the per-chunk kernels (B2, B3, B4)
constexpr int kNW = kNT / 32;

// Workspaces between the stages (besides the forward's ChunkBuffers). Per-chunk fp32 tiles are
// [B*H][NC][kC][D] (D = the padded head size, every row and column written) and
// [B*H][NC][kC][kC]; item = bh * NC + c.
template <class Ti>
struct BwdBuffers {
  Ti *h, *dh;              // [B*H][NC][K][V]: state before chunk c, gradient of the state after it
  Ti *Vp, *dVp;            // [B,T,H,V]: V' and dV'
  float *ws0, *ws1, *ws2;  // B2: dGq, dW, dKd; B3 replaces dW by dGk; B4: per-channel dg
  float *dAqk, *dAkk;      // B2 (dO V'^T, unmasked), B3 (beta o masked dA)
  float* deL;              // [B*H][NC][D]: rowsum(dh o h)
  const Ti* do_;
  Ti *dq, *dk, *dv, *dg, *dbeta;
};

// C (M x N) = alpha op(A) op(B) (+ C when `accumulate`), M, N multiples of 16, kdim of 8,
// 16 x 16 tiles spread over the warps of the block. op(A) = A (M x kdim row-major) or with kAT
// A^T (A stored kdim x M); op(B) = B (kdim x N) or with kBT B^T (B stored N x kdim).
template <bool kAT, bool kBT>
__device__ __forceinline__ void block_gemm(float* C, int ldc, const float* A, int lda,
                                           const float* B, int ldb, int M, int N, int kdim,
                                           float alpha, bool accumulate) {
  const int warp = threadIdx.x / 32, nw = blockDim.x / 32;
  const int tn = N / kBS, ntiles = (M / kBS) * tn;
  for (int t = warp; t < ntiles; t += nw) {
    const int I = t / tn, J = t % tn;
    FragC acc;
    wmma::fill_fragment(acc, 0.f);
    mma_16x16<kAT, kBT>(acc, kAT ? A + I * kBS : A + I * kBS * lda, lda,
                        kBT ? B + J * kBS * ldb : B + J * kBS, ldb, kdim);
    float* c = C + I * kBS * ldc + J * kBS;
    if (accumulate) {
      FragC old;
      wmma::load_matrix_sync(old, c, ldc, wmma::mem_row_major);
#pragma unroll
      for (int e = 0; e < acc.num_elements; ++e) acc.x[e] = old.x[e] + alpha * acc.x[e];
    } else {
#pragma unroll
      for (int e = 0; e < acc.num_elements; ++e) acc.x[e] *= alpha;
    }
    wmma::store_matrix_sync(c, acc, ldc, wmma::mem_row_major);
  }
}

// G = cumsum(g) inside the chunk for columns [col0, col0 + KP) into sG (kC x KP, stride ld):
// per-channel gates from g [B,T,H,K]; scalar gates broadcast over the columns < K; no gate:
// zeros. Rows >= L (and columns >= K) carry g = 0. Syncs before returning.
// With `loaded`, sG already holds the per-token log decays (only the cumulative sum is left).
template <class Ti, int KP>
__device__ void load_gates(float* sG, int lds, const Params<Ti>& p, int b, int h, int t0, int L,
                           int col0, bool loaded = false) {
  if (loaded) {
  } else if (p.gate == GateKind::kPerChannel) {
    load_rows<Ti, kC, KP>(sG, lds, p.g, RowsSpec{p.qk(b, t0, h), int64_t(p.H) * p.K, L, p.K, col0});
  } else {
    for (int e = threadIdx.x; e < kC * KP; e += blockDim.x) {
      const int i = e / KP, c = e % KP;
      sG[i * lds + c] = (p.g && i < L && col0 + c < p.K) ? ld(p.g + p.tok(b, t0 + i, h)) : 0.f;
    }
  }
  cumsum_rows<KP>(sG, lds);
}

// Launchers (delta_rule_chunk_bwd_dhv.cu: B2; delta_rule_chunk_bwd_wy.cu: B3;
// delta_rule_chunk_bwd_gram.cu: B4).
template <class Ti>
void launch_dhv(const Params<Ti>& p, const ChunkDims& cd, const BwdBuffers<Ti>& bw,
                cudaStream_t stream);
// B2 of the gated linear recurrence (no delta rule; linear_recurrence_chunk_bwd.cu): bw.Vp = v,
// dGq (ws0), dKd (ws2), dA_qk and deL only (no dW, dV' not read). bf16 rows of whole vectors.
void launch_dhv_linear(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                       const BwdBuffers<__nv_bfloat16>& bw, cudaStream_t stream);
template <class Ti>
void launch_ut_bwd(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& fw,
                   const BwdBuffers<Ti>& bw, cudaStream_t stream);
// True when it wrote a scalar gate's dg itself (else the caller sums B4's per-channel dG in ws2).
template <class Ti>
bool launch_gram_bwd(const Params<Ti>& p, const ChunkDims& cd, const BwdBuffers<Ti>& bw,
                     cudaStream_t stream);
// B4 for scalar gates and none, one block per chunk-head (delta_rule_chunk_bwd_gram_row.cu; bf16
// rows of whole vectors): dq, dk and a scalar gate's dg.
void launch_gram_row_block(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                           const BwdBuffers<__nv_bfloat16>& bw, cudaStream_t stream);

// The same for the gated linear recurrence (no A_kk, no dGk: bw.dAkk and bw.ws1 are not read).
void launch_gram_row_block_linear(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                                  const BwdBuffers<__nv_bfloat16>& bw, cudaStream_t stream);

// Opt-in shared memory for a kernel (checked against the device limit).
template <class F>
void set_smem(F* kernel, size_t smem) {
  KIMI_CUDA_REQUIRE(smem <= size_t(max_smem_optin()), "chunk delta rule backward: shared memory");
  KIMI_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
}

}  // namespace kimi::cuda::detail::chunk_bwd
