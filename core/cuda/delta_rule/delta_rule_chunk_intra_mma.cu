// Chunkwise delta rule forward, the intra kernel on bf16 tensor cores (mma.sync m16n8k16, fp32
// accumulators) for every gate kind: per-channel (KDA), scalar (GDN: the token's log-decay is
// broadcast over the row's channels, so the per-channel algorithm runs unchanged) and none
// (DeltaNet: every decay is 1, no exp is taken), for bf16 inputs whose rows are whole 16-byte
// vectors (K and V multiples of 8); the WMMA TF32 kernels of delta_rule_chunk_intra.cu
// (per-channel) and delta_rule_chunk_intra_scalar.cuh (scalar, none) stay the oracles and the
// fallback (fp32 / tf32 inputs, other head sizes, KIMI_CUDA_INTRA_KERNEL=old). Same outputs (W, U,
// Gq, Kd in bf16; A_qk, exp(G_last) in fp32), same algorithm (the top of delta_rule_chunk.cu); what
// changes is how the products are taken:
//   Gram tiles   A_kk, A_qk over the 10 lower 16 x 16 tiles, one warp per tile (both matrices
//                share the decayed keys): exp(G_i - G_j) split at a reference row
//                (intra_tiles::gate_ref_row), both factors folded into bf16 operands built in
//                registers from k, q (bf16 shared) and G (fp32 shared) with one exp per element;
//                a diagonal block whose gate span would overflow a factor takes the exact fp32
//                elementwise path instead (strong decays).
//   Tinv         (I + A)^-1 in fp32 by the shared blocked forward substitution
//   (delta_rule_chunk.cuh). W, U         Tinv (beta exp(G) k), Tinv (beta v): Tinv rounded to bf16
//   as the A operand,
//                the right-hand sides as bf16 tiles read by ldmatrix.trans, only the causal
//                k-steps; results leave from the C fragments as bf16 pairs.
// Precision as flash-linear-attention's chunk_kda (bf16 operands, fp32 sums, the inverse in
// bf16 for W / U). One block of 8 warps per (chunk, batch*head); q, k, v arrive by cp.async,
// g through registers (as fp32, for the cumulative sums). Shared memory ~102 KiB at kD = 128:
// two blocks per multiprocessor, so one block's loads overlap the other's products (three for
// the linear recurrence's part, kDelta = false: 68 KiB).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/cuda/attention/attention_mma.cuh"
#include "core/cuda/delta_rule/delta_rule_chunk.cuh"
#include "core/cuda/delta_rule/intra_mma.cuh"
#include "core/cuda/delta_rule/intra_mma_tiles.h"
#include "core/cuda/delta_rule/state_mma.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda::detail::chunk {
namespace {

using bf16 = __nv_bfloat16;
using attn::ldsm4_t;
using attn::mma_bf16;
using attn::pack_bf16;
using namespace intra_mma;
using state_mma::cp16_or_zero;
namespace it = intra_tiles;
namespace mt = mma_tiles;

// kDelta = false: the gated linear recurrence's intra part (linear_recurrence_chunk.cuh): A_qk,
// Gq, Kd and exp(G_last) only; no v, beta, A_kk, inverse, W or U.
template <int kD, GateKind kGate, bool kDelta = true>
__global__ void __launch_bounds__(kIntraThreads, kDelta ? 2 : 3)
    chunk_intra_mma_kernel(Params<bf16> p, ChunkDims cd, ChunkBuffers<bf16> out) {
  using Lay = IntraMmaLayout<kD, kDelta>;
  constexpr int ldb = Lay::ldb, ldg = Lay::ldg;
  extern __shared__ __align__(128) unsigned char smem_intra[];
  bf16* sK = reinterpret_cast<bf16*>(smem_intra + Lay::kK);
  bf16* sQ = reinterpret_cast<bf16*>(smem_intra + Lay::kQ);
  bf16* sV = reinterpret_cast<bf16*>(smem_intra + Lay::kV);
  float* sAkk = reinterpret_cast<float*>(smem_intra + Lay::kAkk);
  float* sG = reinterpret_cast<float*>(smem_intra + Lay::kG);
  float* sBeta = reinterpret_cast<float*>(smem_intra + Lay::kBeta);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int c = blockIdx.x % cd.NC, bh = blockIdx.x / cd.NC, b = bh / p.H, h = bh % p.H;
  const int t0 = c * kC, L = min(kC, p.T - t0);
  const int64_t rs_k = int64_t(p.H) * p.K;
  const int64_t item = int64_t(bh) * cd.NC + c;

  // Loads: q, k, v by cp.async (zero past L, K, V); g as fp32 rows; beta per token.
  {
    constexpr int kVec = kD / 8;
    for (int e = tid; e < kC * kVec; e += kIntraThreads) {
      const int i = e / kVec, col = (e % kVec) * 8;
      const bool okk = i < L && col < p.K, okv = i < L && col < p.V;
      const int64_t gk = okk ? p.qk(b, t0 + i, h) + col : 0,
                    gv = okv ? p.vo(b, t0 + i, h) + col : 0;
      cp16_or_zero(sK + i * ldb + col, p.k + gk, okk);
      cp16_or_zero(sQ + i * ldb + col, p.q + gk, okk);
      if constexpr (kDelta) cp16_or_zero(sV + i * ldb + col, p.v + gv, okv);
    }
    asm volatile("cp.async.commit_group;\n" ::);
    if constexpr (kGate == GateKind::kPerChannel) {
      load_rows<bf16, kC, kD>(sG, ldg, p.g, RowsSpec{p.qk(b, t0, h), rs_k, L, p.K, 0});
    } else {  // the token's log-decay in each of its K channels (a warp reads one address)
      for (int e = tid; e < kC * kD; e += kIntraThreads) {
        const int i = e / kD, col = e % kD;
        float g = 0.f;
        if constexpr (kGate == GateKind::kScalar)
          if (i < L && col < p.K) g = ld(p.g + p.tok(b, t0 + i, h));
        sG[i * ldg + col] = g;
      }
    }
    if (tid < kC) sBeta[tid] = kDelta && tid < L ? ld(p.beta + p.tok(b, t0 + tid, h)) : 0.f;
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  }
  cumsum_rows<kD>(sG, ldg);  // syncs before and after; rows past L hold g = 0

  // Gram tiles (I, J <= I): A_kk to shared (times beta_i, strictly lower), A_qk to global
  // (times scale, lower with the diagonal).
  float* aqk_out = out.Aqk + item * kC * kC;
  for (int u = warp; u < 10; u += kIntraWarps) {
    const mt::RowCol tile = it::gram_tile(u);
    const int I = tile.row, J = tile.col, ref = it::gate_ref_row(I, J);
    float ck[2][4] = {}, cq[2][4] = {};
    bool exact = false;
    // The diagonal block's span: max |G_i - G_ref| over its rows and channels (one channel
    // holds a scalar gate's whole span).
    if (kGate != GateKind::kNone && I == J) {
      constexpr int kCols = kGate == GateKind::kScalar ? 1 : kD;
      float m = 0.f;
      for (int e = lane; e < 16 * kCols; e += 32) {
        const int i = 16 * J + e / kCols, col = e % kCols;
        m = fmaxf(m, fabsf(sG[i * ldg + col] - sG[ref * ldg + col]));
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
      exact = !(m <= it::kMaxSplitExp);  // NaN gates too
    }
    if (exact) {
      exact_diag_tile<kD, ldb, ldg>(J, sK, sQ, sG, lane, ck, cq);
    } else {
      const float* gref = sG + ref * ldg;
      // A scalar gate is the same in every channel of a row: its factors are taken once per tile
      // (the rows a lane holds do not change with the k-step).
      float ra[4] = {}, rb[2][2] = {};
      if constexpr (kGate == GateKind::kScalar) {
#pragma unroll
        for (int r = 0; r < 4; ++r)
          ra[r] = __expf(sG[(16 * I + it::a_pair(lane, r).row) * ldg] - gref[0]);
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
          for (int r = 0; r < 2; ++r)
            rb[nt][r] = __expf(gref[0] - sG[(16 * J + 8 * nt + it::b_pair(lane, r).row) * ldg]);
      }
#pragma unroll 2
      for (int ks = 0; ks < kD / 16; ++ks) {
        if (16 * ks >= p.K) break;  // zero columns past K
        const int c0 = 16 * ks;
        uint32_t ak[4], aq[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {  // rows i of block I: k_i, q_i times exp(G_i - G_ref)
          const mt::RowCol a = it::a_pair(lane, r);
          const int i = 16 * I + a.row, col = c0 + a.col;
          float e0 = ra[r], e1 = ra[r];
          if constexpr (kGate != GateKind::kScalar) {
            const float2 gi = *reinterpret_cast<const float2*>(sG + i * ldg + col);
            const float2 gr = *reinterpret_cast<const float2*>(gref + col);
            e0 = gexp<kGate>(gi.x - gr.x), e1 = gexp<kGate>(gi.y - gr.y);
          }
          const float2 kv = ld_bf2(sK + i * ldb + col), qv = ld_bf2(sQ + i * ldb + col);
          ak[r] = pack_bf16(kv.x * e0, kv.y * e1);
          aq[r] = pack_bf16(qv.x * e0, qv.y * e1);
        }
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {  // rows j of block J: k_j exp(G_ref - G_j)
          uint32_t bk[2];
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const mt::RowCol x = it::b_pair(lane, r);
            const int j = 16 * J + 8 * nt + x.row, col = c0 + x.col;
            float e0 = rb[nt][r], e1 = rb[nt][r];
            if constexpr (kGate != GateKind::kScalar) {
              const float2 gj = *reinterpret_cast<const float2*>(sG + j * ldg + col);
              const float2 gr = *reinterpret_cast<const float2*>(gref + col);
              e0 = gexp<kGate>(gr.x - gj.x), e1 = gexp<kGate>(gr.y - gj.y);
            }
            const float2 kv = ld_bf2(sK + j * ldb + col);
            bk[r] = pack_bf16(kv.x * e0, kv.y * e1);
          }
          if constexpr (kDelta) mma_bf16(ck[nt], ak, bk[0], bk[1]);
          mma_bf16(cq[nt], aq, bk[0], bk[1]);
        }
      }
    }
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {  // elements e, e + 1: columns j, j + 1 of row i
        const mt::RowCol x = mt::c_elem(lane, e);
        const int i = 16 * I + x.row, j = 16 * J + 8 * nt + x.col;
        // Selects, never products with the mask: the upper entries of a split diagonal block
        // may be inf or NaN.
        if constexpr (kDelta) {
          const float bi = sBeta[i];
          *reinterpret_cast<float2*>(sAkk + i * kLdA + j) =
              make_float2(j < i ? bi * ck[nt][e] : 0.f, j + 1 < i ? bi * ck[nt][e + 1] : 0.f);
        }
        *reinterpret_cast<float2*>(aqk_out + i * kC + j) = make_float2(
            j <= i ? p.scale * cq[nt][e] : 0.f, j + 1 <= i ? p.scale * cq[nt][e + 1] : 0.f);
        if (kDelta &&
            out.Akk)  // the backward's B3 reads A_kk (without beta) instead of recomputing it
          *reinterpret_cast<float2*>(out.Akk + item * kC * kC + i * kC + j) =
              make_float2(j < i ? ck[nt][e] : 0.f, j + 1 < i ? ck[nt][e + 1] : 0.f);
      }
  }
  // Warps 2.. (one Gram tile each; warps 0, 1 have two), meanwhile: the zero blocks of A_qk
  // above the diagonal (the state kernels read lower blocks only; written for a complete,
  // deterministic buffer), and for the state kernel Gq = scale q exp(G), Kd = k exp(G_last - G),
  // exp(G_last). Reads only, so they may overlap the Gram products. 8 columns per thread.
  constexpr int kVec = kD / 8;
  const float* Gl = sG + (kC - 1) * ldg;
  if (warp >= 2) {
    constexpr int kFirst = 64, kStride = kIntraThreads - 64;
    for (int e = tid - kFirst; e < kC * kC / 4; e += kStride) {
      const int i = e / (kC / 4), j = (e % (kC / 4)) * 4;
      if (j / 16 > i / 16)
        *reinterpret_cast<float4*>(aqk_out + i * kC + j) = make_float4(0, 0, 0, 0);
    }
    for (int e = tid - kFirst; e < kC * kVec; e += kStride) {
      const int i = e / kVec, col = (e % kVec) * 8;
      if (i >= L || col >= p.K) continue;
      const uint4 kr = *reinterpret_cast<const uint4*>(sK + i * ldb + col);
      const uint4 qr = *reinterpret_cast<const uint4*>(sQ + i * ldb + col);
      const __nv_bfloat162* kh = reinterpret_cast<const __nv_bfloat162*>(&kr);
      const __nv_bfloat162* qh = reinterpret_cast<const __nv_bfloat162*>(&qr);
      uint4 gq, kd;
      __nv_bfloat162* gqh = reinterpret_cast<__nv_bfloat162*>(&gq);
      __nv_bfloat162* kdh = reinterpret_cast<__nv_bfloat162*>(&kd);
      float eq = 1.f, ek = 1.f;  // a scalar gate's exp(G_i), exp(G_last - G_i), once per row
      if constexpr (kGate == GateKind::kScalar)
        eq = __expf(sG[i * ldg]), ek = __expf(Gl[0] - sG[i * ldg]);
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        float2 e_q = make_float2(eq, eq), e_k = make_float2(ek, ek);
        if constexpr (kGate == GateKind::kPerChannel) {
          const float2 g = *reinterpret_cast<const float2*>(sG + i * ldg + col + 2 * m);
          const float2 gl = *reinterpret_cast<const float2*>(Gl + col + 2 * m);
          e_q = make_float2(__expf(g.x), __expf(g.y));
          e_k = make_float2(__expf(gl.x - g.x), __expf(gl.y - g.y));
        }
        const float2 kv = __bfloat1622float2(kh[m]), qv = __bfloat1622float2(qh[m]);
        gqh[m] = __floats2bfloat162_rn(p.scale * qv.x * e_q.x, p.scale * qv.y * e_q.y);
        kdh[m] = __floats2bfloat162_rn(kv.x * e_k.x, kv.y * e_k.y);
      }
      const int64_t gk = p.qk(b, t0 + i, h) + col;
      *reinterpret_cast<uint4*>(out.Gq + gk) = gq;
      *reinterpret_cast<uint4*>(out.Kd + gk) = kd;
    }
    for (int d = tid - kFirst; d < p.K; d += kStride) out.EgL[item * p.K + d] = gexp<kGate>(Gl[d]);
  }
  if constexpr (!kDelta) return;  // every output written; no shared memory read after this
  __syncthreads();                // A complete; q no longer read (its region becomes Tinv)

  // Warps 0-3: the diagonal blocks of Tinv = (I + A)^-1 (fp32) into the q region. Warps 4-7,
  // meanwhile: the right-hand sides in place, k <- beta exp(G) k, v <- beta v (bf16).
  float* sT = reinterpret_cast<float*>(smem_intra + Lay::kQ);
  unit_lower_inverse_diagonal(sAkk, sT, warp, lane);
  if (warp >= 4) {
    constexpr int kFirst = 128, kStride = kIntraThreads - 128;
    for (int e = tid - kFirst; e < kC * kVec; e += kStride) {
      const int i = e / kVec, col = (e % kVec) * 8;
      const float bi = sBeta[i];
      uint4 kr = *reinterpret_cast<const uint4*>(sK + i * ldb + col);
      uint4 vr = *reinterpret_cast<const uint4*>(sV + i * ldb + col);
      __nv_bfloat162* kh = reinterpret_cast<__nv_bfloat162*>(&kr);
      __nv_bfloat162* vh = reinterpret_cast<__nv_bfloat162*>(&vr);
      float eg = 1.f;  // a scalar gate's exp(G_i), once per row
      if constexpr (kGate == GateKind::kScalar) eg = __expf(sG[i * ldg]);
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        float2 e = make_float2(eg, eg);
        if constexpr (kGate == GateKind::kPerChannel) {
          const float2 g = *reinterpret_cast<const float2*>(sG + i * ldg + col + 2 * m);
          e = make_float2(__expf(g.x), __expf(g.y));
        }
        const float2 kv = __bfloat1622float2(kh[m]), vv = __bfloat1622float2(vh[m]);
        kh[m] = __floats2bfloat162_rn(bi * e.x * kv.x, bi * e.y * kv.y);
        vh[m] = __floats2bfloat162_rn(bi * vv.x, bi * vv.y);
      }
      *reinterpret_cast<uint4*>(sK + i * ldb + col) = kr;
      *reinterpret_cast<uint4*>(sV + i * ldb + col) = vr;
    }
  }
  // The blocks below the diagonal (syncs first: G is then free for the scratch).
  unit_lower_inverse_below(sAkk, sT, sG);
  __syncthreads();
  if (out.Tinv) {  // for the backward's B3: Tinv in bf16 (as W / U use it), zero above the
                   // diagonal blocks (never written in sT); reads only, beside the W / U units
    bf16* tg = out.Tinv + item * kC * kC;
    for (int e = tid; e < kC * kC / 8; e += kIntraThreads) {
      const int i = e / (kC / 8), j = (e % (kC / 8)) * 8;
      const bool above = j / 16 > i / 16;
      uint4 v;
      uint32_t* w = reinterpret_cast<uint32_t*>(&v);
#pragma unroll
      for (int m = 0; m < 4; ++m)
        w[m] = above ? 0u : pack_bf16(sT[i * kLdA + j + 2 * m], sT[i * kLdA + j + 2 * m + 1]);
      *reinterpret_cast<uint4*>(tg + i * kC + j) = v;
    }
  }

  // W = Tinv Rk, U = Tinv Rv: a warp's (row block I, 64 columns) units; row block I needs the
  // k-steps 0..I of Tinv (lower triangular).
  for (int n = 0;; ++n) {
    int grp = 0;
    const int I = it::wu_row_block(kD, kIntraWarps, warp, n, &grp);
    if (I < 0) break;
    const bool is_u = grp >= kD / 64;
    const int col0 = (is_u ? grp - kD / 64 : grp) * 64, ncols = is_u ? p.V : p.K;
    if (col0 >= ncols) continue;
    const bf16* rhs = is_u ? sV : sK;
    float acc[8][4] = {};
    for (int ks = 0; ks <= I; ++ks) {
      uint32_t a[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const mt::RowCol x = it::a_pair(lane, r);
        const float2 tv =
            *reinterpret_cast<const float2*>(sT + (16 * I + x.row) * kLdA + 16 * ks + x.col);
        a[r] = pack_bf16(tv.x, tv.y);
      }
#pragma unroll
      for (int n16 = 0; n16 < 4; ++n16) {
        const mt::RowCol x = it::rhs_trans(lane, ks, n16);
        uint32_t r[4];
        ldsm4_t(r, rhs + x.row * ldb + col0 + x.col);
        mma_bf16(acc[2 * n16], a, r[0], r[1]);
        mma_bf16(acc[2 * n16 + 1], a, r[2], r[3]);
      }
    }
    bf16* dst = is_u ? out.U : out.W;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const mt::RowCol x = mt::c_elem(lane, e);
        const int i = 16 * I + x.row, j = col0 + 8 * nt + x.col;
        if (i < L && j < ncols) {
          const int64_t o = (is_u ? p.vo(b, t0 + i, h) : p.qk(b, t0 + i, h)) + j;
          *reinterpret_cast<__nv_bfloat162*>(dst + o) =
              __floats2bfloat162_rn(acc[nt][e], acc[nt][e + 1]);
        }
      }
  }
}

template <int kD, GateKind kGate, bool kDelta>
void launch_intra_mma_dg(const Params<bf16>& p, const ChunkDims& cd, const ChunkBuffers<bf16>& buf,
                         cudaStream_t stream) {
  using Lay = IntraMmaLayout<kD, kDelta>;
  auto* kernel = chunk_intra_mma_kernel<kD, kGate, kDelta>;
  KIMI_CUDA_REQUIRE(Lay::kBytes <= max_smem_optin(), "chunk delta rule (intra mma): shared memory");
  KIMI_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Lay::kBytes));
  // Two blocks per multiprocessor need the largest shared-memory carveout (a hint otherwise).
  KIMI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                       int(cudaSharedmemCarveoutMaxShared)));
  const int64_t items = int64_t(cd.NC) * p.B * p.H;
  kernel<<<unsigned(items), kIntraThreads, Lay::kBytes, stream>>>(p, cd, buf);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <int kD, bool kDelta>
void launch_intra_mma_d(const Params<bf16>& p, const ChunkDims& cd, const ChunkBuffers<bf16>& buf,
                        cudaStream_t stream) {
  switch (p.gate) {
    case GateKind::kPerChannel:
      return launch_intra_mma_dg<kD, GateKind::kPerChannel, kDelta>(p, cd, buf, stream);
    case GateKind::kScalar:
      return launch_intra_mma_dg<kD, GateKind::kScalar, kDelta>(p, cd, buf, stream);
    case GateKind::kNone:
      return launch_intra_mma_dg<kD, GateKind::kNone, kDelta>(p, cd, buf, stream);
  }
}

}  // namespace

bool intra_mma_applies(const Params<bf16>& p) {
  if (!use_prefetch(p)) return false;
  const char* e = std::getenv("KIMI_CUDA_INTRA_KERNEL");
  return !(e && std::string_view(e) == "old");
}

bool launch_intra_mma(const Params<bf16>& p, const ChunkDims& cd, const ChunkBuffers<bf16>& buf,
                      cudaStream_t stream) {
  if (!intra_mma_applies(p)) return false;
  if (cd.D == 64)
    launch_intra_mma_d<64, true>(p, cd, buf, stream);
  else
    launch_intra_mma_d<128, true>(p, cd, buf, stream);
  return true;
}

void launch_intra_mma_linear(const Params<bf16>& p, const ChunkDims& cd,
                             const ChunkBuffers<bf16>& buf, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(use_prefetch(p), "linear recurrence (intra mma): K and V multiples of 8");
  if (cd.D == 64)
    launch_intra_mma_d<64, false>(p, cd, buf, stream);
  else
    launch_intra_mma_d<128, false>(p, cd, buf, stream);
}

}  // namespace kimi::cuda::detail::chunk
