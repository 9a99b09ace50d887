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

#include "core/cuda/allocator.h"
#include "core/cuda/check.h"
#include "core/cuda/delta_rule_common.cuh"

namespace kimi::cuda {
namespace {

using detail::ld;
using detail::Params;
using detail::st;
namespace wmma = nvcuda::wmma;

constexpr int kC = 64;        // chunk length
constexpr int kBS = 16;       // sub-block (WMMA tile) size
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

struct ChunkDims {
  int KP, VP;    // K, V rounded up to 16
  int ldk, ldv;  // padded row strides
  int NC;        // chunks per sequence
};

ChunkDims chunk_dims(int K, int V, int T) {
  ChunkDims c;
  c.KP = (K + 15) / 16 * 16;
  c.VP = (V + 15) / 16 * 16;
  c.ldk = c.KP + 4;
  c.ldv = c.VP + 4;
  c.NC = (T + kC - 1) / kC;
  return c;
}

// Loads L rows (row stride `stride`) of a [B,T,H,D] tensor's head, columns [col0, col0+DP),
// into s (kC x DP, row stride lds); zero outside the tensor.
template <class Ti>
__device__ void load_rows(float* s, int lds, const Ti* src, int64_t row0, int64_t stride, int L,
                          int D, int DP, int col0 = 0) {
  for (int e = threadIdx.x; e < kC * DP; e += blockDim.x) {
    const int i = e / DP, c = e % DP;
    s[i * lds + c] = (i < L && col0 + c < D) ? ld(src + row0 + i * stride + col0 + c) : 0.f;
  }
}

// G (kC x KP): the log decays of the chunk's rows, then (cumsum) their running sums.
template <class Ti>
__device__ void load_cumsum_gates(float* sG, const Params<Ti>& p, const ChunkDims& cd, int b,
                                  int h, int t0, int L) {
  if (p.gate == GateKind::kPerChannel) {
    load_rows(sG, cd.ldk, p.g, p.qk(b, t0, h), int64_t(p.H) * p.K, L, p.K, cd.KP);
  } else {
    for (int e = threadIdx.x; e < kC * cd.KP; e += blockDim.x) {
      const int i = e / cd.KP, c = e % cd.KP;
      sG[i * cd.ldk + c] = (i < L && c < p.K && p.g) ? ld(p.g + p.tok(b, t0 + i, h)) : 0.f;
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < cd.KP; c += blockDim.x) {
    float acc = 0.f;
    for (int i = 0; i < kC; ++i) {
      acc += sG[i * cd.ldk + c];
      sG[i * cd.ldk + c] = acc;
    }
  }
  __syncthreads();
}

// ---------------------------------------------------------------------------------------------
// intra kernel. Shared memory (floats): sK, sQ, sG (kC x ldk each), sAkk, sAqk (kC x kLdA),
// sX (80 x ldk; later sV, kC x ldv), sBeta (kC).
template <class Ti>
__global__ void __launch_bounds__(kThreads) chunk_intra_kernel(Params<Ti> p, ChunkDims cd,
                                                               Ti* W, Ti* U, float* Aqk_out) {
  extern __shared__ __align__(128) float smem[];
  const int ldk = cd.ldk, KP = cd.KP;
  float* sK = smem;
  float* sQ = sK + kC * ldk;
  float* sG = sQ + kC * ldk;
  float* sAkk = sG + kC * ldk;
  float* sAqk = sAkk + kC * kLdA;
  float* sX = sAqk + kC * kLdA;
  float* sBeta = sX + max(80 * ldk, kC * cd.ldv);
  const int c = blockIdx.x, bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int t0 = c * kC, L = min(kC, p.T - t0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;

  load_rows(sK, ldk, p.k, p.qk(b, t0, h), rs_k, L, p.K, KP);
  load_rows(sQ, ldk, p.q, p.qk(b, t0, h), rs_k, L, p.K, KP);
  for (int i = threadIdx.x; i < kC; i += blockDim.x)
    sBeta[i] = i < L ? ld(p.beta + p.tok(b, t0 + i, h)) : 0.f;
  load_cumsum_gates(sG, p, cd, b, h, t0, L);  // syncs

  // Diagonal 16 x 16 blocks, elementwise with exp(G_i - G_j), j <= i.
  for (int w = threadIdx.x; w < 4 * kBS * kBS; w += blockDim.x) {
    const int I = w / (kBS * kBS), i = I * kBS + (w / kBS) % kBS, j = I * kBS + w % kBS;
    float akk = 0.f, aqk = 0.f;
    if (j <= i) {
      const float *Gi = sG + i * ldk, *Gj = sG + j * ldk, *ki = sK + i * ldk, *kj = sK + j * ldk,
                  *qi = sQ + i * ldk;
      for (int d = 0; d < KP; ++d) {
        const float x = kj[d] * __expf(Gi[d] - Gj[d]);
        akk += ki[d] * x;
        aqk += qi[d] * x;
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
    Aqk_out[(int64_t(bh) * cd.NC + c) * kC * kC + e] = aq;
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
      for (int m = J * kBS; m < r; ++m) acc += sAkk[(r + i) * kLdA + m] * sT[m * kLdA + J * kBS + jc];
      sP[(J * kBS + i) * kLdA + jc] = acc;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < I * kBS * kBS; e += blockDim.x) {
      const int J = e / (kBS * kBS), i = (e / kBS) % kBS, jc = e % kBS;
      float acc = 0.f;
      for (int m = 0; m <= i; ++m) acc -= sT[(r + i) * kLdA + r + m] * sP[(J * kBS + m) * kLdA + jc];
      sT[(r + i) * kLdA + J * kBS + jc] = acc;
    }
  }
  // Right-hand sides: Rk = beta exp(G) o k (in sK), Rv = beta v (sV over sX).
  float* sV = sX;
  for (int e = threadIdx.x; e < kC * KP; e += blockDim.x) {
    const int i = e / KP, d = e % KP;
    sK[i * ldk + d] *= sBeta[i] * __expf(sG[i * ldk + d]);
  }
  load_rows(sV, cd.ldv, p.v, p.vo(b, t0, h), rs_v, L, p.V, cd.VP);
  __syncthreads();
  for (int e = threadIdx.x; e < kC * cd.VP; e += blockDim.x)
    sV[(e / cd.VP) * cd.ldv + e % cd.VP] *= sBeta[e / cd.VP];
  __syncthreads();
  // W = Tinv Rk into sG, U = Tinv Rv into sAkk.. (the two C x C matrices are done).
  float* sW = sG;
  float* sU = sAkk;
  const int tk = KP / kBS, tv = cd.VP / kBS, ntiles = 4 * (tk + tv);
  for (int tile = warp; tile < ntiles; tile += kWarps) {
    const bool is_w = tile < 4 * tk;
    const int t = is_w ? tile : tile - 4 * tk, nt = is_w ? tk : tv;
    const int I = t / nt, N = t % nt;
    const float* rhs = is_w ? sK : sV;
    const int ld_rhs = is_w ? ldk : cd.ldv;
    FragC acc;
    wmma::fill_fragment(acc, 0.f);
    mma_16x16<false, false>(acc, sT + I * kBS * kLdA, kLdA, rhs + N * kBS, ld_rhs, (I + 1) * kBS);
    wmma::store_matrix_sync((is_w ? sW + I * kBS * ldk : sU + I * kBS * cd.ldv) + N * kBS, acc,
                            is_w ? ldk : cd.ldv, wmma::mem_row_major);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < L * p.K; e += blockDim.x) {
    const int i = e / p.K, d = e % p.K;
    st(W + p.qk(b, t0 + i, h) + d, sW[i * ldk + d]);
  }
  for (int e = threadIdx.x; e < L * p.V; e += blockDim.x) {
    const int i = e / p.V, d = e % p.V;
    st(U + p.vo(b, t0 + i, h) + d, sU[i * cd.ldv + d]);
  }
}

size_t intra_smem(const ChunkDims& cd) {
  return (3 * kC * cd.ldk + 2 * kC * kLdA + std::max(80 * cd.ldk, kC * cd.ldv) + kC) *
         sizeof(float);
}

// ---------------------------------------------------------------------------------------------
// state kernel, BV columns of V per block. Shared memory (floats): sS (KP x ldb), sW, sQ, sK,
// sG (kC x ldk each; sG later holds O, kC x ldb), sU (kC x ldb; becomes V'), sA (kC x kLdA), sEg (KP).
template <int BV, class Ti>
__global__ void __launch_bounds__(kThreads) chunk_state_kernel(Params<Ti> p, ChunkDims cd,
                                                               const Ti* W, const Ti* U,
                                                               const float* Aqk) {
  extern __shared__ __align__(128) float smem[];
  constexpr int ldb = BV + 4;
  const int ldk = cd.ldk, KP = cd.KP;
  float* sS = smem;
  float* sW = sS + KP * ldb;
  float* sQ = sW + kC * ldk;
  float* sK = sQ + kC * ldk;
  float* sG = sK + kC * ldk;
  float* sU = sG + kC * max(ldk, ldb);  // sG also holds O (kC x ldb) later
  float* sA = sU + kC * ldb;
  float* sEg = sA + kC * kLdA;
  float* sO = sG;
  const int bh = blockIdx.y, b = bh / p.H, h = bh % p.H, v0 = blockIdx.x * BV;
  const int warp = threadIdx.x / 32;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  const int64_t state0 = int64_t(bh) * p.K * p.V;
  const int vcols = min(BV, p.V - v0);

  for (int e = threadIdx.x; e < KP * BV; e += blockDim.x) {
    const int i = e / BV, j = e % BV;
    sS[i * ldb + j] = (p.h0 && i < p.K && j < vcols) ? p.h0[state0 + int64_t(i) * p.V + v0 + j] : 0.f;
  }
  for (int c = 0; c < cd.NC; ++c) {
    const int t0 = c * kC, L = min(kC, p.T - t0);
    __syncthreads();  // the previous chunk is done with every buffer
    load_rows(sW, ldk, W, p.qk(b, t0, h), rs_k, L, p.K, KP);
    load_rows(sQ, ldk, p.q, p.qk(b, t0, h), rs_k, L, p.K, KP);
    load_rows(sK, ldk, p.k, p.qk(b, t0, h), rs_k, L, p.K, KP);
    load_rows(sU, ldb, U, p.vo(b, t0, h), rs_v, L, p.V, BV, v0);
    const float* A = Aqk + (int64_t(bh) * cd.NC + c) * kC * kC;
    for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) sA[(e / kC) * kLdA + e % kC] = A[e];
    load_cumsum_gates(sG, p, cd, b, h, t0, L);  // syncs
    // Gq = scale q o exp(G) (in sQ); Kd = k o exp(G_last - G) (in sK); sEg = exp(G_last).
    const float* Gl = sG + (kC - 1) * ldk;  // padded rows carry g = 0: G_last = G[L-1]
    for (int e = threadIdx.x; e < kC * KP; e += blockDim.x) {
      const int i = e / KP, d = e % KP;
      const float G = sG[i * ldk + d];
      sQ[i * ldk + d] *= p.scale * __expf(G);
      sK[i * ldk + d] *= __expf(Gl[d] - G);
    }
    for (int d = threadIdx.x; d < KP; d += blockDim.x) sEg[d] = __expf(Gl[d]);
    __syncthreads();
    // V' = U - W S (each warp owns whole tiles of sU, updated in place).
    constexpr int tvb = BV / kBS;
    for (int tile = warp; tile < 4 * tvb; tile += kWarps) {
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::load_matrix_sync(acc, sU + I * kBS * ldb + N * kBS, ldb, wmma::mem_row_major);
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
    // O = Gq S + A_qk V' (A_qk is zero above the diagonal), into sO (= sG).
    for (int tile = warp; tile < 4 * tvb; tile += kWarps) {
      const int I = tile / tvb, N = tile % tvb;
      FragC acc;
      wmma::fill_fragment(acc, 0.f);
      mma_16x16<false, false>(acc, sQ + I * kBS * ldk, ldk, sS + N * kBS, ldb, KP);
      mma_16x16<false, false>(acc, sA + I * kBS * kLdA, kLdA, sU + N * kBS, ldb, (I + 1) * kBS);
      wmma::store_matrix_sync(sO + I * kBS * ldb + N * kBS, acc, ldb, wmma::mem_row_major);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < L * vcols; e += blockDim.x) {
      const int i = e / vcols, j = e % vcols;
      st(p.o + p.vo(b, t0 + i, h) + v0 + j, sO[i * ldb + j]);
    }
    for (int e = threadIdx.x; e < KP * BV; e += blockDim.x) sS[(e / BV) * ldb + e % BV] *= sEg[e / BV];
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
  return (cd.KP * ldb + 3 * kC * cd.ldk + kC * std::max(cd.ldk, ldb) + kC * ldb + kC * kLdA +
          cd.KP) * sizeof(float);
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

template <int BV, class Ti>
void launch_state(const Params<Ti>& p, const ChunkDims& cd, const Ti* W, const Ti* U,
                  const float* Aqk, cudaStream_t stream) {
  const size_t smem = state_smem<BV>(cd);
  KIMI_CUDA_REQUIRE(smem <= size_t(max_smem_optin()), "chunk delta rule: shared memory");
  KIMI_CUDA_CHECK(cudaFuncSetAttribute(chunk_state_kernel<BV, Ti>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned(detail::ceil_div(p.V, BV)), unsigned(p.B * p.H));
  chunk_state_kernel<BV, Ti><<<grid, kThreads, smem, stream>>>(p, cd, W, U, Aqk);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class Ti>
void delta_rule_chunk_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                          const Ti* g, const Ti* beta, const float* h0, Ti* o, float* ht,
                          cudaStream_t stream, const ChunkFwdEvents* events) {
  KIMI_CUDA_REQUIRE(d.B >= 0 && d.T >= 0 && d.H >= 0 && d.K > 0 && d.V > 0, "chunk delta rule: bad dims");
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
  p.B = int(d.B); p.T = int(d.T); p.H = int(d.H); p.K = int(d.K); p.V = int(d.V);
  p.gate = d.gate;
  p.scale = float(d.scale);
  p.q = q; p.k = k; p.v = v; p.g = g; p.beta = beta; p.h0 = h0; p.o = o; p.ht = ht;
  const ChunkDims cd = chunk_dims(p.K, p.V, p.T);
  const int64_t BTH = d.B * d.T * d.H, BH = d.B * d.H;
  Buffer W(size_t(BTH * d.K) * sizeof(Ti)), U(size_t(BTH * d.V) * sizeof(Ti));
  Buffer A(size_t(BH * cd.NC * kC * kC) * sizeof(float));
  const size_t smem = intra_smem(cd);
  KIMI_CUDA_REQUIRE(smem <= size_t(max_smem_optin()), "chunk delta rule: shared memory");
  KIMI_CUDA_CHECK(cudaFuncSetAttribute(chunk_intra_kernel<Ti>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->start, stream));
  chunk_intra_kernel<Ti><<<dim3(unsigned(cd.NC), unsigned(BH)), kThreads, smem, stream>>>(
      p, cd, W.as<Ti>(), U.as<Ti>(), A.as<float>());
  KIMI_CUDA_CHECK_LAUNCH();
  if (events) KIMI_CUDA_CHECK(cudaEventRecord(events->mid, stream));
  // Fewer than ~2 blocks per multiprocessor with 64-wide V tiles: use 32-wide tiles.
  if (BH * detail::ceil_div(d.V, 64) >= 2 * sm_count())
    launch_state<64>(p, cd, W.as<Ti>(), U.as<Ti>(), A.as<float>(), stream);
  else
    launch_state<32>(p, cd, W.as<Ti>(), U.as<Ti>(), A.as<float>(), stream);
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
