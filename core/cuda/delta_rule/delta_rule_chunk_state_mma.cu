// Chunkwise delta rule forward, the sequential state kernel on bf16 tensor cores (mma.sync
// m16n8k16, fp32 accumulators), for bf16 inputs whose rows are whole 16-byte vectors (K and V
// multiples of 8); other inputs keep the WMMA TF32 kernel of delta_rule_chunk.cu.
// One block per (V tile of 16 * kNW columns, batch*head), chunks in order. Warp w owns 16 columns
// of V and the matching 16 rows of the transposed state S^T (16 x kD, fp32, in registers as the
// C fragments of kD / 8 n-tiles). Every product is taken transposed, so that the state and V'
// are the A operands and never leave the warp (no shared-memory round trip, no sync between
// warps in the recurrence):
//   -V'^T = S^T W^T - U^T               (B = rows of W by ldmatrix; -U^T by ldmatrix.trans)
//    O^T  = S^T Gq^T + V'^T A_qk^T      (B = rows of Gq; A_qk fp32 rows, blocks on/below the
//                                        diagonal only)
//    S^T <- S^T diag(exp(G_last)) + V'^T Kd   (B = Kd by ldmatrix.trans)
// The C fragments of two adjacent n-tiles are one A fragment (attention_mma.cuh), so S^T and
// V'^T feed the next product after a bf16 rounding. Precision as flash-linear-attention's
// chunk_gated_delta_rule_fwd_h + chunk_fwd_o: bf16 operands (S, V', A_qk rounded), fp32 sums,
// S kept in fp32. The operands of chunk c+1 (rows of W, Kd, Gq, the U tile, A_qk, exp(G_last))
// arrive by cp.async in the second of two shared-memory stages while chunk c is computed.
// KIMI_CUDA_STATE_WARPS=1|2|4|8 fixes the warps per block (V tile = 16 x warps) for experiments.
// O warps (kOW): the O product is off the recurrence's chain. Each chain warp w
// hands its S^T and V'^T fragments (bf16, as the products take them) to a partner warp kNW + w
// through shared memory and named barriers (bar.arrive / bar.sync, 64 threads): S^T as soon as
// it is rounded (the partner takes S^T Gq^T while the chain warp takes V'), V'^T next (the
// partner adds V'^T A_qk^T and writes O while the chain warp updates S). The chain is then 2 of
// the 3 products; where a block is one of few on the GPU (long T, few heads) that chain is the
// time. In store mode the partner writes h_c and V' from the same fragments (the bf16 values the
// chain warp would have written), taking the stores off the chain. KIMI_CUDA_STATE_OWARPS=0|1
// fixes the choice for both modes and the backward's B1 walk; =fwd for these two only, whose
// paired results equal the unpaired ones in bits (B1's partners sum in another order).
// KIMI_CUDA_STATE_PREFETCH=late (paired walks only; default early) issues chunk c+1's cp.async
// after chunk c's top barrier instead of before it, so a stage's refill is ordered after its
// last reads by two block barriers rather than one: an experiment for racecheck's intermittent
// report on the paired walk (notes/gpu.md, session 25), which the CUDA model says is ordered.
// Store mode (kStore, the chunk backward's F2 stage, launch_state_mma_store): no O; the state
// before each chunk, h_c, and V' are written out in bf16 (the [B*H][NC][K][V] and [B,T,H,V]
// buffers the backward's B stages read), through the same per-warp staging tile as O; Gq and
// A_qk are not loaded. KIMI_CUDA_BWD_STATE_KERNEL=old keeps the backward's WMMA TF32 walk.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/cuda/attention/attention_mma.cuh"
#include "core/cuda/delta_rule/delta_rule_chunk.cuh"
#include "core/cuda/delta_rule/state_mma.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda::detail::chunk {
namespace {

using bf16 = __nv_bfloat16;
using attn::ldsm4;
using attn::ldsm4_t;
using attn::mma_bf16;
using attn::pack_bf16;
using namespace state_mma;
namespace mt = mma_tiles;

// Shared memory, in bytes: two stages of operands, then each warp's O staging tile. Row pads
// of 16 bytes put the 8 rows of an ldmatrix (and of the fragment loads of A_qk) in distinct
// banks.
template <int kD, int kNW, bool kStore = false, bool kOW = false>
struct StateMmaLayout {
  static constexpr int kThreads = 32 * kNW * (kOW ? 2 : 1), BV = 16 * kNW;
  static constexpr int ldk = kD + 8;  // bf16 rows of W, Kd, Gq
  static constexpr int ldu = BV + 8;  // bf16 rows of the U tile
  static constexpr int lda = kC + 8;  // fp32 rows of A_qk
  static constexpr int ldo = 16 + 8;  // bf16 rows of a warp's O tile (64 tokens x 16 columns)
  // Store mode: no Gq, no A_qk; the staging tile holds h_c (kD rows) as well as V' (kC rows).
  static constexpr int kORows = kStore && kD > kC ? kD : kC;
  static constexpr int kW = 0, kKd = kW + kC * ldk * 2, kGq = kKd + kC * ldk * 2;
  static constexpr int kU = kGq + (kStore ? 0 : kC * ldk * 2), kA = kU + kC * ldu * 2;
  static constexpr int kEg = kA + (kStore ? 0 : kC * lda * 4);
  static constexpr int kStage = kEg + kD * 4;
  static constexpr int kO = 2 * kStage;
  // O warps: per chain warp, the lanes' A fragments of S^T (kD / 16 k-steps) and V'^T (kC / 16).
  static constexpr int kXWords = (kD / 16 + kC / 16) * 4 * 32;
  static constexpr int kX = kO + kNW * kORows * ldo * 2;
  static constexpr int kBytes = kX + (kOW ? kNW * kXWords * 4 : 0);
  static_assert(kKd % 16 == 0 && kU % 16 == 0 && kA % 16 == 0 && kEg % 16 == 0 && kStage % 128 == 0,
                "cp.async and ldmatrix need 16-byte aligned rows");
};

// Where store mode writes: h [B*H][NC][K][V] (state before chunk c), vp [B,T,H,V] (V').
struct StoreOut {
  bf16 *h, *vp;
};

// kNoW: the gated linear recurrence (no delta rule, linear_recurrence_chunk.cuh): V' = U = v, so
// the W rows are neither loaded nor multiplied (in.W unused, in.U = v); in store mode (its
// backward's F2) only h_c is written, V' being v itself.
template <int kD, int kNW, bool kStore, bool kOW, bool kNoW = false, bool kLate = false>
__global__ void __launch_bounds__(32 * kNW * (kOW ? 2 : 1), 1)
    chunk_state_mma_kernel(Params<bf16> p, ChunkDims cd, ChunkBuffers<bf16> in, StoreOut so) {
  static_assert(!(kNoW && kOW), "the linear recurrence's walks have no partner warps");
  static_assert(!kLate || kOW, "the late prefetch is an experiment on the paired walks");
  using Lay = StateMmaLayout<kD, kNW, kStore, kOW>;
  constexpr int BV = Lay::BV, ldk = Lay::ldk, ldu = Lay::ldu, lda = Lay::lda, ldo = Lay::ldo;
  constexpr int kKT = kD / 8;  // n-tiles of S^T (8 state rows k each)
  extern __shared__ __align__(128) unsigned char smem_mma[];
  const int tid = threadIdx.x, lane = tid % 32;
  const bool o_warp = kOW && tid / 32 >= kNW;
  const int warp = tid / 32 - (o_warp ? kNW : 0);  // the chain warp (of an O warp: its partner)
  const int bh = blockIdx.y, b = bh / p.H, h = bh % p.H, v0 = blockIdx.x * BV;
  const int vw = v0 + 16 * warp;  // first V column of this warp
  const bool active = vw < p.V;   // a tile past V (V not a multiple of the tile) has nothing to do
  const int64_t state0 = int64_t(bh) * p.K * p.V;
  // O warps: the partner's fragments (S^T at xs, V'^T at xv; word [i][lane]) and the two
  // barriers the pair meets at (one use each per chunk: S^T ready, V'^T ready).
  uint32_t* xs = reinterpret_cast<uint32_t*>(smem_mma + Lay::kX) + warp * Lay::kXWords;
  uint32_t* xv = xs + (kD / 16) * 4 * 32;
  const int bar_s = 1 + warp, bar_v = 1 + kNW + warp;

  // Stage st <- chunk c's operands (all threads; zero past the sequence, K and V).
  auto load = [&](int c, int st) {
    unsigned char* base = smem_mma + st * Lay::kStage;
    bf16* sW = reinterpret_cast<bf16*>(base + Lay::kW);
    bf16* sKd = reinterpret_cast<bf16*>(base + Lay::kKd);
    bf16* sGq = reinterpret_cast<bf16*>(base + Lay::kGq);
    bf16* sU = reinterpret_cast<bf16*>(base + Lay::kU);
    float* sA = reinterpret_cast<float*>(base + Lay::kA);
    float* sEg = reinterpret_cast<float*>(base + Lay::kEg);
    const int t0 = c * kC, L = min(kC, p.T - t0);
    if constexpr (kStore && kNoW) {
      bf16* const dst[1] = {sKd};
      const bf16* const src[1] = {in.Kd};
      stage_k_rows<kD, Lay::kThreads>(dst, src, ldk, p, b, h, t0, L, tid);
    } else if constexpr (kStore) {
      bf16* const dst[2] = {sW, sKd};
      const bf16* const src[2] = {in.W, in.Kd};
      stage_k_rows<kD, Lay::kThreads>(dst, src, ldk, p, b, h, t0, L, tid);
    } else if constexpr (kNoW) {
      bf16* const dst[2] = {sKd, sGq};
      const bf16* const src[2] = {in.Kd, in.Gq};
      stage_k_rows<kD, Lay::kThreads>(dst, src, ldk, p, b, h, t0, L, tid);
    } else {
      bf16* const dst[3] = {sW, sKd, sGq};
      const bf16* const src[3] = {in.W, in.Kd, in.Gq};
      stage_k_rows<kD, Lay::kThreads>(dst, src, ldk, p, b, h, t0, L, tid);
    }
    stage_v_rows<BV, Lay::kThreads>(sU, in.U, ldu, p, b, h, t0, L, v0, tid);
    if constexpr (!kStore)
      stage_aqk<Lay::kThreads>(sA, lda, in.Aqk + (int64_t(bh) * cd.NC + c) * kC * kC, L, tid);
    stage_egl<kD, Lay::kThreads>(sEg, in.EgL + (int64_t(bh) * cd.NC + c) * p.K, p.K, tid);
  };

  // S^T: n-tile j holds rows v = vw + c_elem.row, columns k = 8 j + c_elem.col (chain warps).
  float s[kKT][4];
#pragma unroll
  for (int j = 0; j < kKT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int v = vw + mt::c_elem(lane, e).row, k = 8 * j + mt::c_elem(lane, e).col;
      s[j][e] = (!o_warp && p.h0 && v < p.V && k < p.K) ? p.h0[state0 + int64_t(k) * p.V + v] : 0.f;
    }

  load(0, 0);
  cp_commit();
  for (int c = 0; c < cd.NC; ++c) {
    if constexpr (kLate) {
      cp_wait_all();
      __syncthreads();  // chunk c's stage is complete; chunk c - 1's reads are all done
      if (c + 1 < cd.NC) load(c + 1, (c + 1) & 1);
      cp_commit();
    } else {
      if (c + 1 < cd.NC) load(c + 1, (c + 1) & 1);  // that stage was released by the last sync
      cp_commit();                                  // (an empty group on the last chunk)
      cp_wait_all_but_one();
      __syncthreads();  // chunk c's stage is complete for every thread
    }
    const unsigned char* base = smem_mma + (c & 1) * Lay::kStage;
    const bf16* sW = reinterpret_cast<const bf16*>(base + Lay::kW);
    const bf16* sKd = reinterpret_cast<const bf16*>(base + Lay::kKd);
    const bf16* sGq = reinterpret_cast<const bf16*>(base + Lay::kGq);
    const bf16* sU = reinterpret_cast<const bf16*>(base + Lay::kU);
    const float* sA = reinterpret_cast<const float*>(base + Lay::kA);
    const float* sEg = reinterpret_cast<const float*>(base + Lay::kEg);
    const int t0 = c * kC, L = min(kC, p.T - t0);
    bf16* sO = reinterpret_cast<bf16*>(smem_mma + Lay::kO) + warp * Lay::kORows * ldo;
    const int ncols = p.V - vw;  // columns of this warp inside V (> 0 when active)
    bf16* hc = kStore ? so.h + (int64_t(bh) * cd.NC + c) * p.K * p.V + vw : nullptr;
    auto hc_row = [&](int k) { return hc + int64_t(k) * p.V; };
    auto vp_row = [&](int t) { return so.vp + p.vo(b, t0 + t, h) + vw; };
    if (active && o_warp && kStore) {  // h_c and V' of chunk c from the partner's fragments
      store_handed<kD / 16, ldo>(xs, bar_s, 1.f, sO, p.K, ncols, lane, hc_row);
      store_handed<kC / 16, ldo>(xv, bar_v, 1.f, sO, L, ncols, lane, vp_row);
    } else if (active && o_warp) {  // O of chunk c from the partner's fragments
      float ot[kC / 8][4];
      {
        uint32_t sa[kD / 16][4];
        bar_sync(bar_s, 64);
        frags_in(sa, xs, lane);
        o_state<kD, ldk>(ot, sa, sGq, lane);  // while the partner computes V'
      }
      uint32_t va[kC / 16][4];
      bar_sync(bar_v, 64);
      frags_in(va, xv, lane);
      o_intra<lda, ldo>(ot, va, sA, sO, p, b, h, t0, L, vw, lane);  // while it updates S
    } else if (active) {
      if constexpr (kStore && !kOW)  // h_c = S: rows k of the warp's 16 columns
        store_c_tile<kKT, ldo>(sO, s, 1.f, p.K, ncols, lane, hc_row);

      // S^T in bf16: A fragments of the k-steps over the state rows.
      uint32_t sa[kD / 16][4];
      c_to_a<kD / 16>(s, sa, 1.f);
      if constexpr (kOW) {
        frags_out(sa, xs, lane);
        bar_arrive(bar_s, 64);
      }

      // -V'^T = S^T W^T - U^T, n-tile nt = tokens 8 nt .. 8 nt + 7. -U^T: ldmatrix.trans of
      // matrices (tokens 16 q | +8) x (the warp's columns | +8): c0c1, c2c3 of n-tiles 2q, 2q+1.
      float vt[kC / 8][4];
#pragma unroll
      for (int q = 0; q < kC / 16; ++q) {
        uint32_t r[4];
        const mt::RowCol a = mt::u_trans(lane, q, warp);
        ldsm4_t(r, sU + a.row * ldu + a.col);
        unpack_neg(&vt[2 * q][0], r[0]);
        unpack_neg(&vt[2 * q][2], r[1]);
        unpack_neg(&vt[2 * q + 1][0], r[2]);
        unpack_neg(&vt[2 * q + 1][2], r[3]);
      }
      if constexpr (!kNoW) add_state_times_rows<kD, ldk>(vt, sa, sW, lane);
      // V'^T in bf16: A fragments of the k-steps over the chunk's tokens.
      uint32_t va[kC / 16][4];
      c_to_a<kC / 16>(vt, va, -1.f);

      if constexpr (kStore && !kOW) {  // V' rows (tokens) of the warp's 16 columns
        if constexpr (!kNoW) store_c_tile<kC / 8, ldo>(sO, vt, -1.f, L, ncols, lane, vp_row);
      } else if constexpr (kOW) {  // the rest of O (store mode: V') to the partner warp
        frags_out(va, xv, lane);
        bar_arrive(bar_v, 64);
      } else {
        float ot[kC / 8][4];
        o_state<kD, ldk>(ot, sa, sGq, lane);
        o_intra<lda, ldo>(ot, va, sA, sO, p, b, h, t0, L, vw, lane);
      }

      // S^T <- S^T diag(exp(G_last)) + V'^T Kd. B of token k-step ks, n-tiles 2jp, 2jp+1:
      // ldmatrix.trans of matrices (tokens 16 ks | +8) x (k 16 jp | +8).
#pragma unroll
      for (int j = 0; j < kKT; ++j) {  // columns k = 8 j + c_elem.col of elements 0, 1 (2, 3)
        const float2 e = *reinterpret_cast<const float2*>(sEg + 8 * j + mt::c_elem(lane, 0).col);
        s[j][0] *= e.x;
        s[j][1] *= e.y;
        s[j][2] *= e.x;
        s[j][3] *= e.y;
      }
#pragma unroll
      for (int ks = 0; ks < kC / 16; ++ks)
#pragma unroll
        for (int jp = 0; jp < kD / 16; ++jp) {
          uint32_t r[4];
          const mt::RowCol a = mt::kd_trans(lane, ks, jp);
          ldsm4_t(r, sKd + a.row * ldk + a.col);
          mma_bf16(s[2 * jp], va[ks], r[0], r[1]);
          mma_bf16(s[2 * jp + 1], va[ks], r[2], r[3]);
        }
    }
    __syncthreads();  // every warp is done with stage c & 1 (chunk c + 2 loads into it next)
  }
  if (!kStore && p.ht && active && !o_warp) store_state_t(s, p.ht, state0, vw, p.K, p.V, lane);
}

template <int kD, int kNW, bool kStore, bool kOW, bool kNoW = false, bool kLate = false>
void launch_mma_as(const Params<bf16>& p, const ChunkDims& cd, const ChunkBuffers<bf16>& buf,
                   StoreOut so, cudaStream_t stream) {
  using Lay = StateMmaLayout<kD, kNW, kStore, kOW>;
  const auto kernel = chunk_state_mma_kernel<kD, kNW, kStore, kOW, kNoW, kLate>;
  KIMI_CUDA_REQUIRE(Lay::kBytes <= max_smem_optin(), "chunk delta rule (mma): shared memory");
  KIMI_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Lay::kBytes));
  const dim3 grid(unsigned(ceil_div(p.V, Lay::BV)), unsigned(p.B * p.H));
  kernel<<<grid, Lay::kThreads, Lay::kBytes, stream>>>(p, cd, buf, so);
  KIMI_CUDA_CHECK_LAUNCH();
}

// KIMI_CUDA_STATE_PREFETCH: early (default) or late (see the top of this file); read at every
// call (tests), anything else refused.
bool late_prefetch() {
  const char* e = std::getenv("KIMI_CUDA_STATE_PREFETCH");
  const std::string_view v = e ? e : "";
  KIMI_CUDA_REQUIRE(v.empty() || v == "early" || v == "late",
                    "KIMI_CUDA_STATE_PREFETCH must be early or late");
  return v == "late";
}

// A paired walk of kNW chain warps, with the prefetch order late_prefetch() picks.
template <int kD, int kNW, bool kStore>
void launch_paired_as(const Params<bf16>& p, const ChunkDims& cd, const ChunkBuffers<bf16>& buf,
                      StoreOut so, cudaStream_t stream) {
  if (late_prefetch())
    return launch_mma_as<kD, kNW, kStore, true, false, true>(p, cd, buf, so, stream);
  launch_mma_as<kD, kNW, kStore, true>(p, cd, buf, so, stream);
}

// The linear recurrence's walk: no partner warps (its chain is two products, not three).
template <int kD>
void launch_mma_linear_d(int warps, const Params<bf16>& p, const ChunkDims& cd,
                         const ChunkBuffers<bf16>& buf, cudaStream_t stream) {
  const StoreOut none{nullptr, nullptr};
  switch (warps) {
    case 8: return launch_mma_as<kD, 8, false, false, true>(p, cd, buf, none, stream);
    case 4: return launch_mma_as<kD, 4, false, false, true>(p, cd, buf, none, stream);
    case 2: return launch_mma_as<kD, 2, false, false, true>(p, cd, buf, none, stream);
    default: return launch_mma_as<kD, 1, false, false, true>(p, cd, buf, none, stream);
  }
}

template <int kD>
void launch_mma_linear_store_d(int warps, const Params<bf16>& p, const ChunkDims& cd,
                               const ChunkBuffers<bf16>& buf, StoreOut so, cudaStream_t stream) {
  switch (warps) {
    case 8: return launch_mma_as<kD, 8, true, false, true>(p, cd, buf, so, stream);
    case 4: return launch_mma_as<kD, 4, true, false, true>(p, cd, buf, so, stream);
    case 2: return launch_mma_as<kD, 2, true, false, true>(p, cd, buf, so, stream);
    default: return launch_mma_as<kD, 1, true, false, true>(p, cd, buf, so, stream);
  }
}

template <int kD, bool kStore, bool kOW = false>
void launch_mma_d(int warps, const Params<bf16>& p, const ChunkDims& cd,
                  const ChunkBuffers<bf16>& buf, StoreOut so, cudaStream_t stream) {
  if constexpr (kOW) {
    switch (warps) {
      case 8:  // state_mma_owarps never pairs 8 warps
        KIMI_CUDA_REQUIRE(false, "chunk delta rule (mma): O warps with 8 chain warps");
        return;
      case 4: return launch_paired_as<kD, 4, kStore>(p, cd, buf, so, stream);
      case 2: return launch_paired_as<kD, 2, kStore>(p, cd, buf, so, stream);
      default: return launch_paired_as<kD, 1, kStore>(p, cd, buf, so, stream);
    }
  }
  switch (warps) {
    case 8: return launch_mma_as<kD, 8, kStore, false>(p, cd, buf, so, stream);
    case 4: return launch_mma_as<kD, 4, kStore, false>(p, cd, buf, so, stream);
    case 2: return launch_mma_as<kD, 2, kStore, false>(p, cd, buf, so, stream);
    default: return launch_mma_as<kD, 1, kStore, false>(p, cd, buf, so, stream);
  }
}

}  // namespace

int state_mma_warps(int64_t BH, int V, int sms) {
  if (const char* e = std::getenv("KIMI_CUDA_STATE_WARPS")) {
    const int w = std::atoi(e);
    if (w == 1 || w == 2 || w == 4 || w == 8) return w;
  }
  // Wide V tiles load the operands shared by a head's columns (W, Kd, Gq, A_qk) once per tile,
  // and one block fills a multiprocessor's shared memory: take the widest tile that V needs and
  // that still gives ~3/4 of the multiprocessors a block.
  int w = 1;
  while (w < 8 && 16 * w < V) w *= 2;
  while (w > 1 && BH * ceil_div(V, 16 * w) < int64_t(sms) * 3 / 4) w /= 2;
  return w;
}

bool state_mma_owarps(int64_t blocks, int warps, int sms, bool dh_walk) {
  if (const char* e = std::getenv("KIMI_CUDA_STATE_OWARPS")) {
    const std::string_view v = e;
    KIMI_CUDA_REQUIRE(v == "0" || v == "1" || v == "fwd",
                      "KIMI_CUDA_STATE_OWARPS must be 0, 1 or fwd");
    const bool on = v == "1" || (v == "fwd" && !dh_walk);
    KIMI_CUDA_REQUIRE(
        !on || warps <= 4,
        "KIMI_CUDA_STATE_OWARPS=1|fwd needs at most 4 warps of V columns a block "
        "(KIMI_CUDA_STATE_WARPS=1|2|4): 8 and their partners exceed the shared memory");
    return on;
  }
  // One block per multiprocessor or fewer (long sequences, few heads): the walk's chain is the
  // time, and the O warps run on sub-partitions that would idle. Never with 8 chain warps: the
  // pairs' exchange does not fit the shared memory, and 16 warps leave 128 registers a thread.
  // Opt-in until a GPU has run the parity suites and timed them (none was lent in session 23).
  constexpr bool kPartnersByDefault = false;
  return kPartnersByDefault && blocks <= sms && warps <= 4;
}

bool launch_state_mma(const Params<bf16>& p, const ChunkDims& cd, const ChunkBuffers<bf16>& buf,
                      cudaStream_t stream) {
  if (!use_prefetch(p)) return false;  // rows that are not whole 16-byte vectors
  if (const char* e = std::getenv("KIMI_CUDA_STATE_KERNEL"); e && std::string_view(e) == "old")
    return false;
  const int warps = state_mma_warps(int64_t(p.B) * p.H, p.V, sm_count());
  const bool ow =
      state_mma_owarps(int64_t(p.B) * p.H * ceil_div(p.V, 16 * warps), warps, sm_count());
  const StoreOut none{nullptr, nullptr};
  if (cd.D == 64)
    ow ? launch_mma_d<64, false, true>(warps, p, cd, buf, none, stream)
       : launch_mma_d<64, false>(warps, p, cd, buf, none, stream);
  else
    ow ? launch_mma_d<128, false, true>(warps, p, cd, buf, none, stream)
       : launch_mma_d<128, false>(warps, p, cd, buf, none, stream);
  return true;
}

void launch_state_mma_linear(const Params<bf16>& p, const ChunkDims& cd,
                             const ChunkBuffers<bf16>& buf, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(use_prefetch(p) && buf.W == nullptr,
                    "linear recurrence (state mma): K and V multiples of 8, no W");
  const int warps = state_mma_warps(int64_t(p.B) * p.H, p.V, sm_count());
  if (cd.D == 64)
    launch_mma_linear_d<64>(warps, p, cd, buf, stream);
  else
    launch_mma_linear_d<128>(warps, p, cd, buf, stream);
}

void launch_state_mma_store_linear(const Params<bf16>& p, const ChunkDims& cd,
                                   const ChunkBuffers<bf16>& buf, bf16* h, cudaStream_t stream) {
  KIMI_CUDA_REQUIRE(use_prefetch(p) && buf.W == nullptr,
                    "linear recurrence (state mma, store): K and V multiples of 8, no W");
  const int warps = state_mma_warps(int64_t(p.B) * p.H, p.V, sm_count());
  const StoreOut out{h, nullptr};
  if (cd.D == 64)
    launch_mma_linear_store_d<64>(warps, p, cd, buf, out, stream);
  else
    launch_mma_linear_store_d<128>(warps, p, cd, buf, out, stream);
}

bool launch_state_mma_store(const Params<bf16>& p, const ChunkDims& cd,
                            const ChunkBuffers<bf16>& buf, bf16* h, bf16* vp, cudaStream_t stream) {
  if (!use_prefetch(p)) return false;
  if (const char* e = std::getenv("KIMI_CUDA_BWD_STATE_KERNEL"); e && std::string_view(e) == "old")
    return false;
  const int warps = state_mma_warps(int64_t(p.B) * p.H, p.V, sm_count());
  const bool ow =
      state_mma_owarps(int64_t(p.B) * p.H * ceil_div(p.V, 16 * warps), warps, sm_count());
  const StoreOut out{h, vp};
  if (cd.D == 64)
    ow ? launch_mma_d<64, true, true>(warps, p, cd, buf, out, stream)
       : launch_mma_d<64, true>(warps, p, cd, buf, out, stream);
  else
    ow ? launch_mma_d<128, true, true>(warps, p, cd, buf, out, stream)
       : launch_mma_d<128, true>(warps, p, cd, buf, out, stream);
  return true;
}

}  // namespace kimi::cuda::detail::chunk
