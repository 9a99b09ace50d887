// The chunk backward's B1 stage (the reverse walk over chunks that carries dS, the gradient of
// the state after the current chunk) on bf16 tensor cores (mma.sync m16n8k16, fp32
// accumulators), for bf16 inputs whose rows are whole 16-byte vectors (K and V multiples of 8);
// other inputs, and KIMI_CUDA_BWD_DH_KERNEL=old, keep the WMMA TF32 walk of
// delta_rule_chunk_bwd.cu. Per chunk c, from the last to the first:
//   dh_c = dS;  dV' = A_qk^T dO + Kd dS;  dS <- diag(exp(G_last)) dS + Gq^T dO - W^T dV'.
// The forward state kernel's design (delta_rule_chunk_state_mma.cu), transposed the same way:
// one block per (V tile of 16 * kNW columns, batch*head); warp w owns 16 columns of V and dS^T
// (16 x kD, fp32) as the C fragments of kD / 8 n-tiles in registers, so every product has a
// register-resident A operand and no warp waits for another inside the recurrence:
//   dV'^T = dS^T Kd^T + dO^T A_qk          (B = rows of Kd by ldmatrix; A_qk fp32 rows,
//                                            blocks on/below the diagonal only)
//   dS^T <- dS^T diag(e^G_last) + dO^T Gq - dV'^T W   (B = Gq, W by ldmatrix.trans)
// dO^T comes straight from the dO tile as A fragments (ldmatrix.trans); dS^T and dV'^T become A
// fragments from their C fragments after a bf16 rounding. Precision as flash-linear-attention's
// chunk_gated_delta_rule_bwd_dhu: bf16 operands (dS, dV', A_qk rounded), fp32 sums, dS kept in
// fp32 across chunks; the state update uses the bf16 dV' that is stored for B2/B3 (the old walk
// used its fp32 dV' and TF32 operands). dh_c and dV' leave in bf16 through a per-warp staging
// tile; dh0 in fp32 from the registers. Operands of chunk c-1 arrive by cp.async in the second
// of two shared stages while chunk c is computed.
// Partner warps (kPW, state_mma_owarps): the chain is then dV' = dS^T Kd^T + P and
// dS <- dS diag(e^G_last) - dV'^T W + Q. Partner warp kNW + w computes P = dO^T A_qk and
// Q = dO^T Gq of the chunk (neither depends on dS) and hands them over as fp32 C fragments,
// and it writes dh_c and dV' from the chain warp's bf16 fragments (the values the chain would
// have written). Four named barriers per pair and chunk (P ready, Q ready, dS^T ready, dV'^T
// ready), words [i][lane] in shared memory. Only 1 or 2 chain warps: 4 and their exchange do
// not fit the shared memory.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/cuda/delta_rule/delta_rule.cuh"
#include "core/cuda/delta_rule/state_mma.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda {
namespace {
// -1: not yet read from the environment; 0: new (tensor cores); 1: old (WMMA TF32).
std::atomic<int> g_env_old{-1};
std::atomic<int> g_forced{int(ChunkBwdDhKernel::kEnv)};
}  // namespace

void force_chunk_bwd_dh_kernel(ChunkBwdDhKernel k) { g_forced.store(int(k)); }

bool chunk_bwd_dh_old() {
  const auto f = ChunkBwdDhKernel(g_forced.load());
  if (f != ChunkBwdDhKernel::kEnv) return f == ChunkBwdDhKernel::kOld;
  int v = g_env_old.load();
  if (v < 0) {
    const char* e = std::getenv("KIMI_CUDA_BWD_DH_KERNEL");
    v = (e && std::string_view(e) == "old") ? 1 : 0;
    g_env_old.store(v);
  }
  return v == 1;
}

}  // namespace kimi::cuda

namespace kimi::cuda::detail::chunk {
namespace {

using bf16 = __nv_bfloat16;
using attn::ldsm4_t;
using attn::mma_bf16;
using attn::pack_bf16;
using namespace state_mma;
namespace mt = mma_tiles;

// Shared memory, in bytes: two stages of operands, then each warp's staging tile (dh_c: kD rows,
// dV': kC rows). bf16 rows padded by 16 bytes (ldmatrix rows in distinct banks); A_qk rows of
// kC + 4 floats, so that the column-wise fragment loads of mt::aqk_b_rows are conflict-free.
template <int kD, int kNW, bool kPW = false>
struct DhMmaLayout {
  static constexpr int kThreads = 32 * kNW * (kPW ? 2 : 1), BV = 16 * kNW;
  static constexpr int ldk = kD + 8;  // bf16 rows of Gq, Kd, W
  static constexpr int ldu = BV + 8;  // bf16 rows of the dO tile
  static constexpr int lda = kC + 4;  // fp32 rows of A_qk
  static constexpr int ldo = 16 + 8;  // bf16 rows of a warp's staging tile
  static constexpr int kORows = kD > kC ? kD : kC;
  static constexpr int kGq = 0, kKd = kGq + kC * ldk * 2, kW = kKd + kC * ldk * 2;
  static constexpr int kDo = kW + kC * ldk * 2, kA = kDo + kC * ldu * 2;
  static constexpr int kEg = kA + kC * lda * 4;
  static constexpr int kStage = (kEg + kD * 4 + 127) / 128 * 128;
  static constexpr int kO = 2 * kStage;
  // Partner warps, per pair, words [i][lane]: P (kC / 8 n-tiles), Q (kD / 8), the bf16 A
  // fragments of dS^T (kD / 16 k-steps) and -dV'^T (kC / 16).
  static constexpr int kPWords = 4 * 32 * (kC / 8), kQWords = 4 * 32 * (kD / 8);
  static constexpr int kSWords = 4 * 32 * (kD / 16), kVWords = 4 * 32 * (kC / 16);
  static constexpr int kXWords = kPWords + kQWords + kSWords + kVWords;
  static constexpr int kX = kO + kNW * kORows * ldo * 2;
  static constexpr int kBytes = kX + (kPW ? kNW * kXWords * 4 : 0);
  static_assert(kKd % 16 == 0 && kW % 16 == 0 && kDo % 16 == 0 && kA % 16 == 0 && kEg % 16 == 0 &&
                    (lda * 4) % 16 == 0,
                "cp.async and ldmatrix need 16-byte aligned rows");
};

struct DhIO {
  const bf16* do_;   // [B,T,H,V]
  const float* dht;  // [B*H][K][V] or nullptr (zero)
  bf16 *dh, *dvp;    // [B*H][NC][K][V], [B,T,H,V]
  float* dh0;        // [B*H][K][V] or nullptr (not wanted)
};

// C fragments (fp32, N n-tiles) to or from shared words [i][lane].
template <int N>
__device__ __forceinline__ void c_out(const float (&c)[N][4], float* x, int lane) {
#pragma unroll
  for (int i = 0; i < 4 * N; ++i) x[i * 32 + lane] = c[i / 4][i % 4];
}

// dO^T as A fragments of the token k-steps: the matrices mt::u_trans names are a0..a3 of k-step
// q (v lo / hi, tokens lo / hi).
template <int ldu>
__device__ __forceinline__ void do_frags(uint32_t (&oa)[kC / 16][4], const bf16* sDo, int warp,
                                         int lane) {
#pragma unroll
  for (int q = 0; q < kC / 16; ++q) {
    const mt::RowCol a = mt::u_trans(lane, q, warp);
    ldsm4_t(oa[q], sDo + a.row * ldu + a.col);
  }
}

// acc += dO^T A_qk. A_qk[s][t] is zero for s < t: n-tile nt (keys t = 8 nt..) needs the query
// k-steps ks >= nt / 2 only.
template <int lda>
__device__ __forceinline__ void add_do_aqk(float (&acc)[kC / 8][4],
                                           const uint32_t (&oa)[kC / 16][4], const float* sA,
                                           int lane) {
#pragma unroll
  for (int nt = 0; nt < kC / 8; ++nt)
#pragma unroll
    for (int ks = nt / 2; ks < kC / 16; ++ks) {
      const mt::RowCol a = mt::aqk_b_rows(lane, nt, ks, 0);
      const float* x = sA + a.row * lda + a.col;
      mma_bf16(acc[nt], oa[ks], pack_bf16(x[0], x[lda]), pack_bf16(x[8 * lda], x[9 * lda]));
    }
}

// kNoW: the gated linear recurrence (no delta rule): no W rows, so dS does not depend on dV'
// (which is dv itself, written to io.dvp).
template <int kD, int kNW, bool kPW, bool kNoW = false>
__global__ void __launch_bounds__(32 * kNW * (kPW ? 2 : 1), 1)
    bwd_dh_mma_kernel(Params<bf16> p, ChunkDims cd, ChunkBuffers<bf16> in, DhIO io) {
  static_assert(!(kNoW && kPW), "the linear recurrence's walks have no partner warps");
  using Lay = DhMmaLayout<kD, kNW, kPW>;
  constexpr int BV = Lay::BV, ldk = Lay::ldk, ldu = Lay::ldu, lda = Lay::lda, ldo = Lay::ldo;
  constexpr int kKT = kD / 8;  // n-tiles of dS^T (8 state rows k each)
  extern __shared__ __align__(128) unsigned char smem_dh[];
  const int tid = threadIdx.x, lane = tid % 32;
  const bool partner = kPW && tid / 32 >= kNW;
  const int warp = tid / 32 - (partner ? kNW : 0);  // the chain warp (of a partner: its own)
  const int bh = blockIdx.y, b = bh / p.H, h = bh % p.H, v0 = blockIdx.x * BV;
  const int vw = v0 + 16 * warp;  // first V column of this warp
  const bool active = vw < p.V;   // a warp past V (V not a multiple of the tile) idles
  const int64_t state0 = int64_t(bh) * p.K * p.V;
  // Partner warps: the pair's exchange words and barriers (one use each per chunk).
  float* xp = reinterpret_cast<float*>(smem_dh + Lay::kX) + warp * Lay::kXWords;
  float* xq = xp + Lay::kPWords;
  uint32_t* xs = reinterpret_cast<uint32_t*>(xq + Lay::kQWords);
  uint32_t* xv = xs + Lay::kSWords;
  const int bar_p = 1 + 4 * warp, bar_q = bar_p + 1, bar_s = bar_p + 2, bar_v = bar_p + 3;

  // Stage st <- chunk c's operands (all threads; zero past the sequence, K and V).
  auto load = [&](int c, int st) {
    unsigned char* base = smem_dh + st * Lay::kStage;
    bf16* sGq = reinterpret_cast<bf16*>(base + Lay::kGq);
    bf16* sKd = reinterpret_cast<bf16*>(base + Lay::kKd);
    bf16* sW = reinterpret_cast<bf16*>(base + Lay::kW);
    bf16* sDo = reinterpret_cast<bf16*>(base + Lay::kDo);
    float* sA = reinterpret_cast<float*>(base + Lay::kA);
    float* sEg = reinterpret_cast<float*>(base + Lay::kEg);
    const int t0 = c * kC, L = min(kC, p.T - t0);
    if constexpr (kNoW) {
      bf16* const dst[2] = {sGq, sKd};
      const bf16* const src[2] = {in.Gq, in.Kd};
      stage_k_rows<kD, Lay::kThreads>(dst, src, ldk, p, b, h, t0, L, tid);
    } else {
      bf16* const dst[3] = {sGq, sKd, sW};
      const bf16* const src[3] = {in.Gq, in.Kd, in.W};
      stage_k_rows<kD, Lay::kThreads>(dst, src, ldk, p, b, h, t0, L, tid);
    }
    stage_v_rows<BV, Lay::kThreads>(sDo, io.do_, ldu, p, b, h, t0, L, v0, tid);
    stage_aqk<Lay::kThreads>(sA, lda, in.Aqk + (int64_t(bh) * cd.NC + c) * kC * kC, L, tid);
    stage_egl<kD, Lay::kThreads>(sEg, in.EgL + (int64_t(bh) * cd.NC + c) * p.K, p.K, tid);
  };

  // dS^T: n-tile j holds rows v = vw + c_elem.row, columns k = 8 j + c_elem.col.
  float ds[kKT][4];
#pragma unroll
  for (int j = 0; j < kKT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int v = vw + mt::c_elem(lane, e).row, k = 8 * j + mt::c_elem(lane, e).col;
      ds[j][e] =
          (!partner && io.dht && v < p.V && k < p.K) ? io.dht[state0 + int64_t(k) * p.V + v] : 0.f;
    }

  load(cd.NC - 1, 0);
  cp_commit();
  for (int n = 0; n < cd.NC; ++n) {
    const int c = cd.NC - 1 - n;
    if (c > 0) load(c - 1, (n + 1) & 1);  // that stage was released by the last sync
    cp_commit();                          // (an empty group on the last chunk)
    cp_wait_all_but_one();
    __syncthreads();  // chunk c's stage is complete for every thread
    const unsigned char* base = smem_dh + (n & 1) * Lay::kStage;
    const bf16* sGq = reinterpret_cast<const bf16*>(base + Lay::kGq);
    const bf16* sKd = reinterpret_cast<const bf16*>(base + Lay::kKd);
    const bf16* sW = reinterpret_cast<const bf16*>(base + Lay::kW);
    const bf16* sDo = reinterpret_cast<const bf16*>(base + Lay::kDo);
    const float* sA = reinterpret_cast<const float*>(base + Lay::kA);
    const float* sEg = reinterpret_cast<const float*>(base + Lay::kEg);
    const int t0 = c * kC, L = min(kC, p.T - t0);
    bf16* sO = reinterpret_cast<bf16*>(smem_dh + Lay::kO) + warp * Lay::kORows * ldo;
    const int ncols = p.V - vw;  // columns of this warp inside V (> 0 when active)
    bf16* dhc = io.dh + (int64_t(bh) * cd.NC + c) * p.K * p.V + vw;
    auto dhc_row = [&](int k) { return dhc + int64_t(k) * p.V; };
    auto dvp_row = [&](int t) { return io.dvp + p.vo(b, t0 + t, h) + vw; };
    if (active && partner) {
      uint32_t oa[kC / 16][4];
      do_frags<ldu>(oa, sDo, warp, lane);
      {
        float pc[kC / 8][4] = {};
        add_do_aqk<lda>(pc, oa, sA, lane);
        c_out(pc, xp, lane);
        bar_arrive(bar_p, 64);
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {  // Q in two halves of n-tiles (fewer registers)
        float qc[kKT / 2][4] = {};
#pragma unroll
        for (int ks = 0; ks < kC / 16; ++ks)
#pragma unroll
          for (int jq = 0; jq < kD / 32; ++jq) {
            uint32_t r[4];
            const mt::RowCol a = mt::kd_trans(lane, ks, half * kD / 32 + jq);
            ldsm4_t(r, sGq + a.row * ldk + a.col);
            mma_bf16(qc[2 * jq], oa[ks], r[0], r[1]);
            mma_bf16(qc[2 * jq + 1], oa[ks], r[2], r[3]);
          }
        c_out(qc, xq + half * 4 * (kKT / 2) * 32, lane);
      }
      bar_arrive(bar_q, 64);
      // dh_c and dV' (handed over as -dV'^T) from the chain warp's bf16 fragments.
      store_handed<kD / 16, ldo>(xs, bar_s, 1.f, sO, p.K, ncols, lane, dhc_row);
      store_handed<kC / 16, ldo>(xv, bar_v, -1.f, sO, L, ncols, lane, dvp_row);
    } else if (active) {
      if constexpr (!kPW)  // dh_c = dS: rows k of the warp's 16 columns
        store_c_tile<kKT, ldo>(sO, ds, 1.f, p.K, ncols, lane, dhc_row);

      // dV'^T = dS^T Kd^T + dO^T A_qk, n-tile nt = tokens 8 nt .. 8 nt + 7.
      float dv[kC / 8][4];
#pragma unroll
      for (int nt = 0; nt < kC / 8; ++nt) dv[nt][0] = dv[nt][1] = dv[nt][2] = dv[nt][3] = 0.f;
      {
        uint32_t sa[kD / 16][4];
        c_to_a<kD / 16>(ds, sa, 1.f);
        if constexpr (kPW) {
          frags_out(sa, xs, lane);
          bar_arrive(bar_s, 64);
        }
        add_state_times_rows<kD, ldk>(dv, sa, sKd, lane);
      }
      uint32_t oa[kC / 16][4];
      if constexpr (kPW) {  // + P from the partner
        bar_sync(bar_p, 64);
#pragma unroll
        for (int i = 0; i < 4 * (kC / 8); ++i) dv[i / 4][i % 4] += xp[i * 32 + lane];
      } else {
        do_frags<ldu>(oa, sDo, warp, lane);
        add_do_aqk<lda>(dv, oa, sA, lane);
        store_c_tile<kC / 8, ldo>(sO, dv, 1.f, L, ncols, lane, dvp_row);  // dV' rows (tokens)
      }
      uint32_t va[kC / 16][4];  // -dV'^T, the same bf16 values as stored
      c_to_a<kC / 16>(dv, va, -1.f);
      if constexpr (kPW) {
        frags_out(va, xv, lane);
        bar_arrive(bar_v, 64);
      }

      // dS^T <- dS^T diag(e^G_last) + dO^T Gq - dV'^T W. B of token k-step ks, n-tiles 2jp,
      // 2jp+1: ldmatrix.trans of (tokens 16 ks | +8) x (k 16 jp | +8), as Kd in the forward.
      // With partners dO^T Gq arrives as Q, added last.
#pragma unroll
      for (int j = 0; j < kKT; ++j) {
        const float2 e = *reinterpret_cast<const float2*>(sEg + 8 * j + mt::c_elem(lane, 0).col);
        ds[j][0] *= e.x;
        ds[j][1] *= e.y;
        ds[j][2] *= e.x;
        ds[j][3] *= e.y;
      }
#pragma unroll
      for (int ks = 0; ks < kC / 16; ++ks)
#pragma unroll
        for (int jp = 0; jp < kD / 16; ++jp) {
          const mt::RowCol a = mt::kd_trans(lane, ks, jp);
          if constexpr (!kPW) {
            uint32_t r[4];
            ldsm4_t(r, sGq + a.row * ldk + a.col);
            mma_bf16(ds[2 * jp], oa[ks], r[0], r[1]);
            mma_bf16(ds[2 * jp + 1], oa[ks], r[2], r[3]);
          }
          if constexpr (!kNoW) {
            uint32_t w[4];
            ldsm4_t(w, sW + a.row * ldk + a.col);
            mma_bf16(ds[2 * jp], va[ks], w[0], w[1]);
            mma_bf16(ds[2 * jp + 1], va[ks], w[2], w[3]);
          }
        }
      if constexpr (kPW) {
        bar_sync(bar_q, 64);
#pragma unroll
        for (int i = 0; i < 4 * kKT; ++i) ds[i / 4][i % 4] += xq[i * 32 + lane];
      }
    }
    __syncthreads();  // every warp is done with stage n & 1 (chunk c - 2 loads into it next)
  }
  if (io.dh0 && active && !partner) store_state_t(ds, io.dh0, state0, vw, p.K, p.V, lane);
}

template <int kD, int kNW, bool kPW, bool kNoW = false>
void launch_dh_as(const Params<bf16>& p, const ChunkDims& cd, const ChunkBuffers<bf16>& buf,
                  DhIO io, cudaStream_t stream) {
  using Lay = DhMmaLayout<kD, kNW, kPW>;
  KIMI_CUDA_REQUIRE(Lay::kBytes <= max_smem_optin(),
                    "chunk delta rule bwd (dh mma): shared memory");
  KIMI_CUDA_CHECK(cudaFuncSetAttribute(bwd_dh_mma_kernel<kD, kNW, kPW, kNoW>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, Lay::kBytes));
  const dim3 grid(unsigned(ceil_div(p.V, Lay::BV)), unsigned(p.B * p.H));
  bwd_dh_mma_kernel<kD, kNW, kPW, kNoW>
      <<<grid, Lay::kThreads, Lay::kBytes, stream>>>(p, cd, buf, io);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <int kD>
void launch_dh_linear_d(int warps, const Params<bf16>& p, const ChunkDims& cd,
                        const ChunkBuffers<bf16>& buf, DhIO io, cudaStream_t stream) {
  switch (warps) {
    case 8: return launch_dh_as<kD, 8, false, true>(p, cd, buf, io, stream);
    case 4: return launch_dh_as<kD, 4, false, true>(p, cd, buf, io, stream);
    case 2: return launch_dh_as<kD, 2, false, true>(p, cd, buf, io, stream);
    default: return launch_dh_as<kD, 1, false, true>(p, cd, buf, io, stream);
  }
}

template <int kD>
void launch_dh_d(int warps, bool pw, const Params<bf16>& p, const ChunkDims& cd,
                 const ChunkBuffers<bf16>& buf, DhIO io, cudaStream_t stream) {
  if (pw) {  // warps <= 2 (launch_bwd_dh_mma)
    return warps == 2 ? launch_dh_as<kD, 2, true>(p, cd, buf, io, stream)
                      : launch_dh_as<kD, 1, true>(p, cd, buf, io, stream);
  }
  switch (warps) {
    case 8: return launch_dh_as<kD, 8, false>(p, cd, buf, io, stream);
    case 4: return launch_dh_as<kD, 4, false>(p, cd, buf, io, stream);
    case 2: return launch_dh_as<kD, 2, false>(p, cd, buf, io, stream);
    default: return launch_dh_as<kD, 1, false>(p, cd, buf, io, stream);
  }
}

}  // namespace

bool launch_bwd_dh_mma(const Params<bf16>& p, const ChunkDims& cd, const ChunkBuffers<bf16>& buf,
                       const bf16* do_, const float* dht, bf16* dh, bf16* dvp, float* dh0,
                       cudaStream_t stream) {
  if (!use_prefetch(p) || chunk_bwd_dh_old()) return false;
  // The same V-tile choice as the forward walk (KIMI_CUDA_STATE_WARPS overrides both).
  const int warps = state_mma_warps(int64_t(p.B) * p.H, p.V, sm_count());
  const DhIO io{do_, dht, dh, dvp, dh0};
  // Partner warps where the forward walk takes them (KIMI_CUDA_STATE_OWARPS included) and the
  // pairs fit the shared memory (1 or 2 chain warps).
  const int64_t blocks = int64_t(p.B) * p.H * ceil_div(p.V, 16 * warps);
  const bool pw = warps <= 2 && state_mma_owarps(blocks, warps, sm_count(), /*dh_walk=*/true);
  if (cd.D == 64)
    launch_dh_d<64>(warps, pw, p, cd, buf, io, stream);
  else
    launch_dh_d<128>(warps, pw, p, cd, buf, io, stream);
  return true;
}

void launch_bwd_dh_mma_linear(const Params<bf16>& p, const ChunkDims& cd,
                              const ChunkBuffers<bf16>& buf, const bf16* do_, const float* dht,
                              bf16* dh, bf16* dv, float* dh0, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(use_prefetch(p) && buf.W == nullptr,
                    "linear recurrence bwd (dh mma): K and V multiples of 8, no W");
  const int warps = state_mma_warps(int64_t(p.B) * p.H, p.V, sm_count());
  const DhIO io{do_, dht, dh, dv, dh0};
  if (cd.D == 64)
    launch_dh_linear_d<64>(warps, p, cd, buf, io, stream);
  else
    launch_dh_linear_d<128>(warps, p, cd, buf, io, stream);
}

}  // namespace kimi::cuda::detail::chunk
