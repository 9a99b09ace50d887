// Shared by the two chunkwise delta-rule kernels (not a public API): the chunk constants, the
// WMMA (TF32) tile product, the padded head size, the buffers the intra kernel hands the state
// kernel, and the intra kernel's launcher (delta_rule_chunk_intra.cu). docs/math.md#chunkwise;
// the algorithm is described at the top of delta_rule_chunk.cu.
#pragma once

#include <mma.h>

#include <algorithm>
#include <type_traits>

#include "core/cuda/delta_rule/chunk_loads.cuh"
#include "core/cuda/delta_rule/delta_rule_common.cuh"

namespace kimi::cuda::detail::chunk {

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

inline ChunkDims chunk_dims(int K, int V, int T) {
  return ChunkDims{std::max(K, V) <= 64 ? 64 : 128, (T + kC - 1) / kC};
}

// Running sums of the log decays down the rows of sG (kC rows, KP columns, row stride lds):
// G = cumsum(g) inside the chunk. One thread per column; the column is read in batches of 16
// before the dependent adds. Syncs before and after (used by the forward and the backward).
template <int KP>
__device__ __forceinline__ void cumsum_rows(float* sG, int lds) {
  __syncthreads();
  for (int c = threadIdx.x; c < KP; c += blockDim.x) {
    float acc = 0.f;
#pragma unroll
    for (int i0 = 0; i0 < kC; i0 += 16) {
      float x[16];
#pragma unroll
      for (int u = 0; u < 16; ++u) x[u] = sG[(i0 + u) * lds + c];
#pragma unroll
      for (int u = 0; u < 16; ++u) {
        acc += x[u];
        sG[(i0 + u) * lds + c] = acc;
      }
    }
  }
  __syncthreads();
}

// T = (I + A)^-1 of a strictly lower triangular C x C matrix A (stride kLdA), by blocks of
// 16 (the forward kernels and the backward's WY/UT stage). First the diagonal blocks by forward
// substitution, by warps 0-3 (lane = column; other threads do nothing, so a caller may give them
// other work); then, after the caller's sync, the blocks below the diagonal in row-block order,
// T_IJ = -T_II sum_{M=J}^{I-1} A_IM T_MJ, with sP (C x C, stride kLdA) as scratch. The caller
// zeroes the blocks of sT above the diagonal if it reads them.
__device__ __forceinline__ void unit_lower_inverse_diagonal(const float* sA, float* sT, int warp,
                                                            int lane) {
  if (warp >= 4 || lane >= kBS) return;
  const int r = warp * kBS;
  float x[kBS];
#pragma unroll
  for (int i = 0; i < kBS; ++i) {
    float acc = (i == lane) ? 1.f : 0.f;
#pragma unroll
    for (int j = 0; j < i; ++j) acc -= sA[(r + i) * kLdA + r + j] * x[j];
    x[i] = acc;
    sT[(r + i) * kLdA + r + lane] = acc;
  }
}

// Syncs before each row block and returns unsynced.
__device__ __forceinline__ void unit_lower_inverse_below(const float* sA, float* sT, float* sP) {
  for (int I = 1; I < 4; ++I) {
    const int r = I * kBS;
    __syncthreads();
    for (int e = threadIdx.x; e < I * kBS * kBS; e += blockDim.x) {
      const int J = e / (kBS * kBS), i = (e / kBS) % kBS, jc = e % kBS;
      float acc = 0.f;
      for (int m = J * kBS; m < r; ++m) acc += sA[(r + i) * kLdA + m] * sT[m * kLdA + J * kBS + jc];
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
}

// What the intra kernel hands the state kernel, per chunk: W = T (exp(G) o k), U = T v and
// Gq = scale q o exp(G), Kd = k o exp(G_last - G) ([B,T,H,K] / [B,T,H,V], type Ti); A_qk
// (fp32, [B*H][NC][kC][kC], lower triangle incl. diagonal) and exp(G_last) (fp32, [B*H][NC][K]).
// Akk, Tinv (the backward's F1 on the tensor-core KDA intra kernel only, else nullptr): A_kk
// (fp32 [B*H][NC][kC][kC], strictly lower; the blocks above the diagonal are not written) and
// T = (I + Diag(beta) A_kk)^-1 (Ti, every entry) for B3, which then need not recompute them.
template <class Ti>
struct ChunkBuffers {
  Ti *W, *U, *Gq, *Kd;
  float *Aqk, *EgL;
  float* Akk = nullptr;
  Ti* Tinv = nullptr;
};

// Register prefetch: bf16 rows that are whole 16-byte vectors (K, V multiples of 8).
template <class Ti>
bool use_prefetch(const Params<Ti>& p) {
  return sizeof(Ti) == 2 && vec_ok<Ti>(p.K, 0) && vec_ok<Ti>(p.V, 0);
}

// Launches the intra kernel (delta_rule_chunk_intra.cu; float and __nv_bfloat16).
template <class Ti>
void launch_intra(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                  cudaStream_t stream);

// Launches the intra kernel on bf16 tensor cores (delta_rule_chunk_intra_mma.cu; every gate
// kind) and returns true, or returns false where it does not apply (rows that are not whole
// 16-byte vectors, or KIMI_CUDA_INTRA_KERNEL=old): then launch_intra runs the WMMA TF32 kernel
// of the gate kind.
bool launch_intra_mma(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                      const ChunkBuffers<__nv_bfloat16>& buf, cudaStream_t stream);
// Whether launch_intra_mma would run (and so honour buf.Akk / buf.Tinv) for these inputs.
bool intra_mma_applies(const Params<__nv_bfloat16>& p);

// The gated linear recurrence's forward (linear_recurrence_chunk.cu) on the same two kernels,
// without the delta rule's parts: the intra kernel writes A_qk, Gq, Kd and exp(G_last) only
// (buf.W, buf.U unused), and the state walk takes V' = buf.U = v (buf.W == nullptr), writing O
// and the final state. Both need K and V multiples of 8 (use_prefetch).
void launch_intra_mma_linear(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                             const ChunkBuffers<__nv_bfloat16>& buf, cudaStream_t stream);
void launch_state_mma_linear(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                             const ChunkBuffers<__nv_bfloat16>& buf, cudaStream_t stream);

// Launches the state kernel on bf16 tensor cores (delta_rule_chunk_state_mma.cu) and returns
// true, or returns false where it does not apply (rows that are not whole 16-byte vectors, or
// KIMI_CUDA_STATE_KERNEL=old): then the caller runs the WMMA TF32 state kernel.
bool launch_state_mma(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                      const ChunkBuffers<__nv_bfloat16>& buf, cudaStream_t stream);
// The same kernel in store mode for the chunk backward's F2 stage: no O; h_c (the state before
// chunk c, [B*H][NC][K][V]) and V' ([B,T,H,V]) written in bf16. False (nothing launched) where
// launch_state_mma would refuse or KIMI_CUDA_BWD_STATE_KERNEL=old.
bool launch_state_mma_store(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                            const ChunkBuffers<__nv_bfloat16>& buf, __nv_bfloat16* h,
                            __nv_bfloat16* vp, cudaStream_t stream);
// The linear recurrence's store mode (its backward's F2): h_c only (V' = v). Needs
// use_prefetch and buf.W == nullptr (refused otherwise).
void launch_state_mma_store_linear(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                                   const ChunkBuffers<__nv_bfloat16>& buf, __nv_bfloat16* h,
                                   cudaStream_t stream);
// The chunk backward's B1 walk on bf16 tensor cores (delta_rule_chunk_bwd_dh_mma.cu): dh_c
// ([B*H][NC][K][V]) and dV' ([B,T,H,V]) in bf16 from dO, the intra buffers and dht (nullptr =
// zero); dh0 (fp32, nullptr = not wanted). False (nothing launched) where the rows are not whole
// 16-byte vectors or the old kernel is chosen (chunk_bwd_dh_old).
bool launch_bwd_dh_mma(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                       const ChunkBuffers<__nv_bfloat16>& buf, const __nv_bfloat16* do_,
                       const float* dht, __nv_bfloat16* dh, __nv_bfloat16* dvp, float* dh0,
                       cudaStream_t stream);
// The linear recurrence's B1 (no W): dh_c, and dV' = A_qk^T dO + Kd dh_c, which is dv itself;
// dS <- diag(exp(G_last)) dS + Gq^T dO. Same layouts and conditions as
// launch_state_mma_store_linear.
void launch_bwd_dh_mma_linear(const Params<__nv_bfloat16>& p, const ChunkDims& cd,
                              const ChunkBuffers<__nv_bfloat16>& buf, const __nv_bfloat16* do_,
                              const float* dht, __nv_bfloat16* dh, __nv_bfloat16* dv, float* dh0,
                              cudaStream_t stream);
// Warps per block of that kernel (V tile = 16 x warps) for BH heads of V columns on `sms`
// multiprocessors; KIMI_CUDA_STATE_WARPS overrides.
int state_mma_warps(int64_t BH, int V, int sms);
// Whether the state walks (forward, F2, and B1 with <= 2 chain warps) give each chain warp a
// partner warp, for a grid of `blocks` blocks of `warps` chain warps on `sms` multiprocessors;
// KIMI_CUDA_STATE_OWARPS=0|1 overrides, =fwd pairs the forward and F2 walks only (dh_walk:
// B1 asks). Opt-in until measured on a GPU.
bool state_mma_owarps(int64_t blocks, int warps, int sms, bool dh_walk = false);

}  // namespace kimi::cuda::detail::chunk
