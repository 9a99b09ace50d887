// Shared by the chunkwise kernels of the gated linear recurrence (not a public API). The
// algorithm is the delta rule's chunk form (docs/math.md#chunkwise) without the WY/UT part (no
// beta, no A_kk inverse); per chunk of kC = 64 tokens, G = cumsum(g) inside the chunk (scalar gates
// broadcast over the K channels, so one code path serves both gate kinds):
//   intra   (parallel, per chunk x head): Gq = scale q o exp(G), Kd = k o exp(G_L - G),
//           exp(G_L), A_qk[i,j] = scale q_i.(k_j o exp(G_i - G_j)) (j <= i, zero above).
//   scan    (sequential, per head x V tile): the state before each chunk,
//           h_c = S;  S <- exp(G_L) o S + Kd^T V.  The same kernel runs backwards for the
//           state gradients: dh_c = dS (gradient of the state after chunk c);
//           dS <- exp(G_L) o dS + Gq^T dO.
//   output  (parallel, per chunk x head x V tile): O = Gq h_c + A_qk V.
//   grad    (parallel, per chunk x head): dV = A_qk^T dO + Kd dh_c; dGq = dO h_c^T,
//           dKd = V dh_c^T, dA = dO V^T; then dq, dk (elementwise parts and the backward of
//           the decayed Gram matrix A_qk) and dg = reverse cumsum of q o dq - k o dk, plus at
//           the chunk's last row sum_j Kd_j o dKd_j + rowsum(dh_c o h_c) o exp(G_L).
// Products on the tensor cores (WMMA, TF32 in, fp32 accumulate), as the delta-rule kernels.
#pragma once

#include "core/cuda/delta_rule/delta_rule_chunk_bwd.cuh"

namespace kimi::cuda::detail::lrc {

using namespace kimi::cuda::detail::chunk_bwd;

// What the intra kernel hands the others: Gq, Kd ([B,T,H,K], Ti), A_qk (fp32,
// [B*H][NC][kC][kC], zero above the diagonal), exp(G_L) (fp32, [B*H][NC][K]).
template <class Ti>
struct LrBuffers {
  Ti *Gq, *Kd;
  float *Aqk, *EgL;
};

// The state at chunk c of head bh in a [B*H][NC][K][V] array.
__host__ __device__ inline int64_t state_at(int bh, int c, int NC, int K, int V) {
  return (int64_t(bh) * NC + c) * K * V;
}

// G = cumsum(g) inside the chunk into sG (kC x KP, stride lds), as load_gates does, but a scalar
// gate is read once per token (64 loads in flight at once, not kC x KP dependent ones) and then
// broadcast over the K columns. Syncs before returning.
template <class Ti, int KP>
__device__ void lr_load_gates(float* sG, int lds, const Params<Ti>& p, int b, int h, int t0,
                              int L) {
  if (p.gate == GateKind::kPerChannel) return load_gates<Ti, KP>(sG, lds, p, b, h, t0, L, 0);
  __shared__ float sg[kC];
  if (threadIdx.x < kC) {
    const int i = threadIdx.x;
    sg[i] = (p.g && i < L) ? ld(p.g + p.tok(b, t0 + i, h)) : 0.f;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kC * KP; e += blockDim.x) {
    const int i = e / KP, c = e % KP;
    sG[i * lds + c] = c < p.K ? sg[i] : 0.f;
  }
  load_gates<Ti, KP>(sG, lds, p, b, h, t0, L, 0, /*loaded=*/true);  // syncs, cumsum, syncs
}

// Whether the bf16 tensor-core path runs (the delta rule's intra kernel and state walk without
// their delta-rule parts, delta_rule_chunk.cuh): bf16 rows of whole 16-byte vectors, unless
// KIMI_CUDA_LR_KERNEL=old keeps the kernels below (the oracle).
template <class Ti>
bool lr_tensor_core(const Params<Ti>& p);
// The intra outputs into buf: on the tensor-core intra kernel where lr_tensor_core, else
// launch_lr_intra's.
template <class Ti>
void launch_lr_intra_any(const Params<Ti>& p, const ChunkDims& cd, const LrBuffers<Ti>& buf,
                         cudaStream_t stream);

// The forward in one kernel (linear_recurrence_walk.cu) for a scalar gate or none, where one
// block holds a head's whole V (the walk's V-tile rule) or KIMI_CUDA_LR_FUSED=1 forces it; false
// (nothing launched) otherwise or with KIMI_CUDA_LR_FUSED=0: then the intra kernel + the walk.
bool launch_lr_walk(const Params<__nv_bfloat16>& p, const ChunkDims& cd, cudaStream_t stream);

// Launchers. scan: S starts at init (nullptr = zero) and walks the chunks forwards
// (X = Kd, Y = v) or backwards (X = Gq, Y = dO), storing the state met at each chunk into
// hs (Ti) and the final one into fin (nullptr = not wanted).
template <class Ti>
void launch_lr_intra(const Params<Ti>& p, const ChunkDims& cd, const LrBuffers<Ti>& buf,
                     cudaStream_t stream);
template <class Ti>
void launch_lr_scan(const Params<Ti>& p, const ChunkDims& cd, const Ti* X, const Ti* Y,
                    const float* EgL, const float* init, Ti* hs, float* fin, bool reverse,
                    cudaStream_t stream);
template <class Ti>
void launch_lr_output(const Params<Ti>& p, const ChunkDims& cd, const LrBuffers<Ti>& buf,
                      const Ti* hs, cudaStream_t stream);
template <class Ti>
void launch_lr_grad(const Params<Ti>& p, const ChunkDims& cd, const LrBuffers<Ti>& buf,
                    const Ti* hs, const Ti* dhs, const Ti* do_, Ti* dq, Ti* dk, Ti* dv, Ti* dg,
                    cudaStream_t stream);

}  // namespace kimi::cuda::detail::lrc
