// Chunkwise delta rule backward on the GPU, the per-chunk kernel B3 (the WY/UT backward); stages
// and notation in delta_rule_chunk_bwd.cuh, math as in core/cpu/delta_rule_chunk_bwd.cpp. B2 is
// delta_rule_chunk_bwd_dhv.cu.
#include <algorithm>
#include <type_traits>

#include "core/cuda/delta_rule/bwd_mma.cuh"
#include "core/cuda/delta_rule/delta_rule_chunk_bwd.cuh"
#include "core/cuda/delta_rule/kernel_choice.h"
#include "core/cuda/delta_rule/state_mma.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {
detail::KernelChoice g_wy_choice("KIMI_CUDA_BWD_WY_KERNEL");
}  // namespace
void force_chunk_bwd_wy_kernel(ChunkBwdDhKernel k) { g_wy_choice.force(k); }
bool chunk_bwd_wy_old() { return g_wy_choice.old(); }
}  // namespace kimi::cuda

namespace kimi::cuda::detail::chunk_bwd {
namespace {

// B3's products: bf16 mma.sync with kMma, WMMA TF32 otherwise (same arguments as block_gemm).
template <bool kMma, bool kAT, bool kBT>
__device__ __forceinline__ void ut_gemm(float* C, int ldc, const float* A, int lda, const float* B,
                                        int ldb, int M, int N, int kdim, float alpha,
                                        bool accumulate) {
  if constexpr (kMma)
    bwd_mma::block_gemm_bf16<kAT, kBT>(C, ldc, A, lda, B, ldb, M, N, kdim, alpha, accumulate);
  else
    block_gemm<kAT, kBT>(C, ldc, A, lda, B, ldb, M, N, kdim, alpha, accumulate);
}

// Warp-per-row pass over the kC rows: acc[i] += sum_{d < n} f(i, d).
template <class F>
__device__ __forceinline__ void row_sums_add(float* acc, int n, F&& f) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = warp; i < kC; i += kNW) {
    float s = 0.f;
    for (int d = lane; d < n; d += 32) s += f(i, d);
    s = warp_sum(s);
    if (lane == 0) acc[i] += s;
  }
}

// B3, one block per (chunk, batch*head): A_kk (pairwise decays as in the forward's intra
// kernel), T = (I + Diag(beta) A_kk)^-1, then the UT backward
//   dR_U = T^T dV', dv = beta o dR_U, dA = -(dR_U U^T + dR_W W^T), dR_W = T^T dW,
//   dbeta = rowsum(dR_U o v + dR_W o Gk + dA o A_kk), dA_kk = beta o strict_lower(dA),
//   dGk = beta o dR_W (into ws1, over dW).
// With kPre (bf16 rows of whole vectors) dV', v, U and W are loaded into registers at the
// start, while A_kk and T are computed. Shared (floats): sK, sG, sX1, sX2 (kC x ldk), sAkk,
// sA (later dA), sT (kC x kLdA), beta, dbeta; with kMma also sWs (kC x ldk: dW by cp.async).
// With kMma (bf16 inputs unless KIMI_CUDA_BWD_WY_KERNEL=old) the off-diagonal blocks of A_kk and
// the four UT products run on bf16 mma.sync (operands rounded to bf16 as they are gathered:
// decayed k rows, T, dV', U, dW, W, dR_U, dR_W; fp32 sums). The inverse T itself stays fp32 on
// the CUDA cores (forward substitution: rounding A there would compound down the rows).
// With kStored (F1 ran the tensor-core intra kernel with fw.Akk / fw.Tinv set) A_kk and T
// are read from F1 instead of recomputed: the first half of the kernel (the exps of the
// diagonal blocks, three barrier-separated off-diagonal rounds, the serial substitutions) goes.
template <class Ti, int kD, bool kPre, bool kMma, bool kStored = false>
__global__ void __launch_bounds__(kNT, 1)
    ut_bwd_kernel(Params<Ti> p, ChunkDims cd, ChunkBuffers<Ti> fw, BwdBuffers<Ti> bw) {
  extern __shared__ __align__(128) float smem[];
  constexpr int ldk = kD + 4;
  float* sK = smem;
  float* sG = sK + kC * ldk;
  float* sX1 = sG + kC * ldk;
  float* sX2 = sX1 + kC * ldk;
  float* sAkk = sX2 + kC * ldk;
  float* sA = sAkk + kC * kLdA;
  float* sT = sA + kC * kLdA;
  float* sBeta = sT + kC * kLdA;
  float* sDb = sBeta + kC;
  float* sWs = sDb + kC;  // kMma: dW (fp32 kC x ldk), by cp.async from the start
  const int c = blockIdx.x, bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t0 = c * kC, L = min(kC, p.T - t0);
  const int64_t item = int64_t(bh) * cd.NC + c;
  const int64_t rs_k = int64_t(p.H) * p.K, rs_v = int64_t(p.H) * p.V;
  const RowsSpec kspec{p.qk(b, t0, h), rs_k, L, p.K, 0}, vspec{p.vo(b, t0, h), rs_v, L, p.V, 0};
  const RowsSpec wspec{item * kC * kD, kD, kC, kD, 0};  // a per-chunk fp32 workspace tile
  constexpr int kSl = kPre ? (kC * kD / kVecWidth<Ti> + kNT - 1) / kNT : 1;
  RowsPrefetch<Ti, kC, kD, kSl> pdv, pv, pu, pw;
  if constexpr (kPre) {
    pdv.issue(bw.dVp, vspec);
    pv.issue(p.v, vspec);
    pu.issue(fw.U, vspec);
    pw.issue(fw.W, kspec);
  }
  if constexpr (kMma) {  // dW, needed halfway: in flight behind everything before it
    const float* ws = bw.ws1 + item * kC * kD;
    for (int e = threadIdx.x; e < kC * kD / 4; e += kNT) {
      const int i = e / (kD / 4), col = (e % (kD / 4)) * 4;
      state_mma::cp16_or_zero(sWs + i * ldk + col, ws + i * kD + col, true);
    }
    state_mma::cp_commit();
  }
  // load(): a tile of the UT backward, from the prefetch registers or from global memory.
  auto load = [&](RowsPrefetch<Ti, kC, kD, kSl>& pf, const Ti* src, const RowsSpec& spec) {
    if constexpr (kPre)
      pf.commit(sX1, ldk, spec);
    else
      load_rows<Ti, kC, kD>(sX1, ldk, src, spec);
  };
  load_rows<Ti, kC, kD>(sK, ldk, p.k, kspec);
  if (threadIdx.x < kC) {
    sBeta[threadIdx.x] = threadIdx.x < L ? ld(p.beta + p.tok(b, t0 + threadIdx.x, h)) : 0.f;
    sDb[threadIdx.x] = 0.f;
  }
  if constexpr (kStored) {  // A_kk and T from F1 (the blocks of A_kk above the diagonal: masked)
    const RowsSpec aspec{item * kC * kC, kC, kC, kC, 0};
    load_rows<float, kC, kC>(sAkk, kLdA, fw.Akk, aspec);
    load_rows<Ti, kC, kC>(sT, kLdA, fw.Tinv, aspec);
  }
  load_gates<Ti, kD>(sG, ldk, p, b, h, t0, L, 0);  // syncs
  if constexpr (!kStored) {
    // --- A_kk: diagonal 16 x 16 blocks elementwise (j < i), off-diagonal blocks on the tensor
    // cores with exp(G_i - G_j) = exp(G_i - G_r) exp(G_r - G_j) (r: the row block's first row).
    for (int w = threadIdx.x; w < 4 * kBS * kBS; w += blockDim.x) {
      const int I = w / (kBS * kBS), i = I * kBS + (w / kBS) % kBS, j = I * kBS + w % kBS;
      float akk = 0.f;
      if (j < i) {
        const float4 *Gi = reinterpret_cast<const float4*>(sG + i * ldk),
                     *Gj = reinterpret_cast<const float4*>(sG + j * ldk),
                     *ki = reinterpret_cast<const float4*>(sK + i * ldk),
                     *kj = reinterpret_cast<const float4*>(sK + j * ldk);
        for (int d = 0; d < kD / 4; ++d) {
          const float4 gi = Gi[d], gj = Gj[d], a = ki[d], kk = kj[d];
          akk += a.x * kk.x * __expf(gi.x - gj.x) + a.y * kk.y * __expf(gi.y - gj.y) +
                 a.z * kk.z * __expf(gi.z - gj.z) + a.w * kk.w * __expf(gi.w - gj.w);
        }
      }
      sAkk[i * kLdA + j] = akk;
    }
    for (int I = 1; I < 4; ++I) {
      const int r = I * kBS;
      __syncthreads();  // sX1 free again
      for (int e = threadIdx.x; e < (kBS + r) * kD; e += blockDim.x) {
        const int row = e / kD, d = e % kD;
        const int i = row < kBS ? r + row : row - kBS;
        const float x = row < kBS ? __expf(sG[i * ldk + d] - sG[r * ldk + d])
                                  : __expf(sG[r * ldk + d] - sG[i * ldk + d]);
        sX1[row * ldk + d] = sK[i * ldk + d] * x;
      }
      __syncthreads();
      if (warp < I) {
        if constexpr (kMma) {
          float acc[2][4];
          bwd_mma::zero_16x16(acc);
          bwd_mma::mma_16x16_bf16<false, true>(acc, sX1, ldk, sX1 + (kBS + warp * kBS) * ldk, ldk,
                                               kD);
          bwd_mma::store_16x16(sAkk + r * kLdA + warp * kBS, kLdA, acc);
        } else {
          FragC acc;
          wmma::fill_fragment(acc, 0.f);
          mma_16x16<false, true>(acc, sX1, ldk, sX1 + (kBS + warp * kBS) * ldk, ldk, kD);
          wmma::store_matrix_sync(sAkk + r * kLdA + warp * kBS, acc, kLdA, wmma::mem_row_major);
        }
      }
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) {
    const int i = e / kC, j = e % kC;
    const float a = j < i ? sAkk[i * kLdA + j] : 0.f;
    sAkk[i * kLdA + j] = a;
    sA[i * kLdA + j] = sBeta[i] * a;
    if constexpr (!kStored) sT[i * kLdA + j] = 0.f;
  }
  __syncthreads();
  // --- T = (I + A)^-1 (unit lower): diagonal blocks by forward substitution (lane = column),
  // then T_IJ = -T_II sum_{M=J}^{I-1} A_IM T_MJ, row blocks in order (scratch sP in sX2).
  if constexpr (!kStored) {
    unit_lower_inverse_diagonal(sA, sT, warp, lane);
    unit_lower_inverse_below(sA, sT, sX2);
    __syncthreads();
  }
  // --- UT backward, value side: dR_U = T^T dV' (sX2); dv; dbeta += rowsum(dR_U o v);
  // dA = -dR_U U^T.
  load(pdv, bw.dVp, vspec);
  __syncthreads();
  ut_gemm<kMma, true, false>(sX2, ldk, sT, kLdA, sX1, ldk, kC, kD, kC, 1.f, false);
  __syncthreads();
  load(pv, p.v, vspec);
  __syncthreads();
  store_rows_fn(bw.dv, p.vo(b, t0, h), rs_v, 0, L, p.V,
                [&](int i, int d) { return sBeta[i] * sX2[i * ldk + d]; });
  row_sums_add(sDb, kD, [&](int i, int d) { return sX2[i * ldk + d] * sX1[i * ldk + d]; });
  __syncthreads();
  load(pu, fw.U, vspec);
  __syncthreads();
  ut_gemm<kMma, false, true>(sA, kLdA, sX2, ldk, sX1, ldk, kC, kC, kD, -1.f, false);
  __syncthreads();
  // --- key side: dR_W = T^T dW (sX2); dA -= dR_W W^T; dbeta += rowsum(dR_W o Gk).
  if constexpr (kMma) {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();
    ut_gemm<kMma, true, false>(sX2, ldk, sT, kLdA, sWs, ldk, kC, kD, kC, 1.f, false);
  } else {
    load_rows<float, kC, kD>(sX1, ldk, bw.ws1, wspec);
    __syncthreads();
    ut_gemm<kMma, true, false>(sX2, ldk, sT, kLdA, sX1, ldk, kC, kD, kC, 1.f, false);
  }
  __syncthreads();
  load(pw, fw.W, kspec);
  __syncthreads();
  ut_gemm<kMma, false, true>(sA, kLdA, sX2, ldk, sX1, ldk, kC, kC, kD, -1.f, true);
  row_sums_add(sDb, kD, [&](int i, int d) {
    return sX2[i * ldk + d] * sK[i * ldk + d] * __expf(sG[i * ldk + d]);
  });
  __syncthreads();
  // --- dA masked: dbeta += rowsum(dA o A_kk); dA_kk = beta o dA.
  for (int i = warp; i < kC; i += kNW) {
    float s = 0.f;
    for (int j = lane; j < kC; j += 32) {
      const float da = j < i ? sA[i * kLdA + j] : 0.f;
      s += da * sAkk[i * kLdA + j];
      bw.dAkk[(item * kC + i) * kC + j] = sBeta[i] * da;
    }
    s = warp_sum(s);
    if (lane == 0) sDb[i] += s;
  }
  __syncthreads();
  if (threadIdx.x < L) st(bw.dbeta + p.tok(b, t0 + threadIdx.x, h), sDb[threadIdx.x]);
  store_rows_fn(bw.ws1, item * kC * kD, kD, 0, kC, kD,
                [&](int i, int d) { return sBeta[i] * sX2[i * ldk + d]; });
}

template <class Ti, int kD, bool kPre, bool kMma, bool kStored = false>
void launch_ut_as(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& fw,
                  const BwdBuffers<Ti>& bw, cudaStream_t stream) {
  // kMma: a fifth kC x (kD + 4) tile for dW (222 KB at kD = 128, within the 227 KB opt-in).
  const size_t smem =
      size_t((kMma ? 5 : 4) * kC * (kD + 4) + 3 * kC * kLdA + 2 * kC) * sizeof(float);
  set_smem(ut_bwd_kernel<Ti, kD, kPre, kMma, kStored>, smem);
  const dim3 grid(unsigned(cd.NC), unsigned(p.B * p.H));
  ut_bwd_kernel<Ti, kD, kPre, kMma, kStored><<<grid, kNT, smem, stream>>>(p, cd, fw, bw);
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class Ti>
void launch_ut_bwd(const Params<Ti>& p, const ChunkDims& cd, const ChunkBuffers<Ti>& fw,
                   const BwdBuffers<Ti>& bw, cudaStream_t stream) {
  if constexpr (sizeof(Ti) == 2) {
    const bool pre = use_prefetch(p);
    if (!chunk_bwd_wy_old() && pre && fw.Tinv) {  // F1 handed over A_kk and T
      if (cd.D == 64) return launch_ut_as<Ti, 64, true, true, true>(p, cd, fw, bw, stream);
      return launch_ut_as<Ti, 128, true, true, true>(p, cd, fw, bw, stream);
    }
    if (!chunk_bwd_wy_old()) {
      if (pre && cd.D == 64) return launch_ut_as<Ti, 64, true, true>(p, cd, fw, bw, stream);
      if (pre) return launch_ut_as<Ti, 128, true, true>(p, cd, fw, bw, stream);
      if (cd.D == 64) return launch_ut_as<Ti, 64, false, true>(p, cd, fw, bw, stream);
      return launch_ut_as<Ti, 128, false, true>(p, cd, fw, bw, stream);
    }
    if (pre) {
      if (cd.D == 64) return launch_ut_as<Ti, 64, true, false>(p, cd, fw, bw, stream);
      return launch_ut_as<Ti, 128, true, false>(p, cd, fw, bw, stream);
    }
  }
  if (cd.D == 64) return launch_ut_as<Ti, 64, false, false>(p, cd, fw, bw, stream);
  launch_ut_as<Ti, 128, false, false>(p, cd, fw, bw, stream);
}

#define KIMI_INSTANTIATE(Ti)                                                                    \
  template void launch_ut_bwd<Ti>(const Params<Ti>&, const ChunkDims&, const ChunkBuffers<Ti>&, \
                                  const BwdBuffers<Ti>&, cudaStream_t);
KIMI_INSTANTIATE(float)
KIMI_INSTANTIATE(__nv_bfloat16)
#undef KIMI_INSTANTIATE

}  // namespace kimi::cuda::detail::chunk_bwd
