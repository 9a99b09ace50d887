// Chunkwise delta rule forward on the GPU, the intra kernel (docs/math.md#chunkwise; the algorithm
// is described at the top of delta_rule_chunk.cu), one block per (chunk, batch*head), in
// parallel: G = cumsum(g) inside the chunk, A_kk and A_qk with pairwise decays as exponent
// differences, Tinv = (I + A_kk)^-1 by blocked forward substitution, W = Tinv (beta exp(G) o k),
// U = Tinv (beta v); and its launcher.
#include <algorithm>
#include <cstdlib>

#include "core/cuda/delta_rule/delta_rule_chunk.cuh"
#include "core/cuda/delta_rule/delta_rule_chunk_intra_scalar.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda::detail::chunk {
namespace {

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
    cumsum_rows<KP>(sG, KP + 4);  // syncs before and after
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
    unit_lower_inverse_diagonal(sAkk, sT, warp, lane);
    unit_lower_inverse_below(sAkk, sT, sAqk);  // scratch: A_qk is already stored
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

// The kernel for the call's gate: scalar and no gate take the specialised kernel
// (delta_rule_chunk_intra_scalar.cuh), per-channel gates the general one above.
template <class Ti, bool kPre, int kD, int kNT>
void launch_intra_as(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                     cudaStream_t stream) {
  const bool pc = p.gate == GateKind::kPerChannel;
  const size_t smem = pc ? intra_smem(cd) : intra_scalar_smem(cd);
  auto* kernel = pc ? chunk_intra_kernel<Ti, kPre, kD, kNT>
                 : p.gate == GateKind::kScalar
                     ? chunk_intra_scalar_kernel<Ti, kPre, kD, kNT, true>
                     : chunk_intra_scalar_kernel<Ti, kPre, kD, kNT, false>;
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

}  // namespace

template <class Ti>
void launch_intra(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& buf,
                  cudaStream_t stream) {
  if constexpr (sizeof(Ti) == 2) {
    if (launch_intra_mma(p, cd, buf, stream)) return;  // bf16 tensor cores, any gate
    if (use_prefetch(p)) {
      if (cd.D == 64) return launch_intra_nt<Ti, true, 64>(p, cd, buf, stream);
      return launch_intra_nt<Ti, true, 128>(p, cd, buf, stream);
    }
  }
  if (cd.D == 64) return launch_intra_nt<Ti, false, 64>(p, cd, buf, stream);
  launch_intra_nt<Ti, false, 128>(p, cd, buf, stream);
}

template void launch_intra<float>(const Params<float>&, const ChunkDims&,
                                  const ChunkBuffers<float>&, cudaStream_t);
template void launch_intra<__nv_bfloat16>(const Params<__nv_bfloat16>&, const ChunkDims&,
                                          const ChunkBuffers<__nv_bfloat16>&, cudaStream_t);

}  // namespace kimi::cuda::detail::chunk
