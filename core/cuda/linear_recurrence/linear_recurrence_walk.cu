// The chunkwise gated linear recurrence forward in ONE kernel, for a scalar gate (Mamba2's SSD
// core, simple_gla) or none, bf16 inputs whose rows are whole 16-byte vectors: the delta rule's
// tensor-core state walk with V' = v (delta_rule_chunk_state_mma.cu, kNoW) that builds its chunk
// operands itself from q, k and g instead of reading them from an intra kernel. With one decay
// per token the decayed Gram matrix is a plain product and an elementwise factor,
//   A_qk[i][j] = scale (q_i . k_j) exp(G_i - G_j)   (j <= i; exp <= 1, no split factors),
// and Gq = scale q exp(G), Kd = k exp(G_last - G), G = cumsum(g) inside the chunk. Per chunk: warp
// 0 sums the gates (prefetched into registers), every thread scales the staged q and k rows, the
// warps share the ten lower 16 x 16 Gram tiles, then each warp runs the walk's step on its 16 V
// columns (O = S^T Gq^T + V^T A_qk^T, S^T <- S^T e^G_last + V^T Kd). q, k and the v tile of
// the next chunk arrive by cp.async meanwhile. Chosen where one block holds a head's whole V
// (launch_lr_walk): nothing is computed twice, and the intra kernel's round trip through HBM
// (Gq, Kd, A_qk: 80 KB a chunk and head) is gone.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/cuda/delta_rule/intra_mma.cuh"
#include "core/cuda/delta_rule/intra_mma_tiles.h"
#include "core/cuda/delta_rule/state_mma.cuh"
#include "core/cuda/linear_recurrence/linear_recurrence_chunk.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda::detail::lrc {
namespace {

using bf16 = __nv_bfloat16;
using namespace chunk::state_mma;
using chunk::intra_mma::gexp;  // exp of a log-decay difference; 1 without a gate
namespace mt = chunk::mma_tiles;

// Shared memory, in bytes: two stages of (q, k rows, the v tile), then the chunk's operands
// (Gq, Kd, A_qk, G, exp(G_last)) and each warp's O staging tile. Row pads of 16 bytes as in the
// state walk (ldmatrix rows in distinct banks).
template <int kD, int kNW>
struct WalkLayout {
  static constexpr int kThreads = 32 * kNW, BV = 16 * kNW;
  static constexpr int ldk = kD + 8, ldu = BV + 8, lda = kC + 8, ldo = 16 + 8;
  static constexpr int kQ = 0, kK = kQ + kC * ldk * 2, kU = kK + kC * ldk * 2;
  static constexpr int kStage = (kU + kC * ldu * 2 + 127) / 128 * 128;
  static constexpr int kGq = 2 * kStage, kKd = kGq + kC * ldk * 2, kA = kKd + kC * ldk * 2;
  static constexpr int kG = kA + kC * lda * 4, kEg = kG + kC * 4, kO = kEg + kD * 4;
  static constexpr int kBytes = kO + kNW * kC * ldo * 2;
  static_assert(kK % 128 == 0 && kU % 128 == 0 && kGq % 128 == 0 && kKd % 128 == 0 &&
                    kA % 128 == 0 && kO % 16 == 0,
                "cp.async and ldmatrix need 16-byte aligned rows");
};

template <int kD, int kNW, GateKind kGate>
__global__ void __launch_bounds__(32 * kNW, 1) lr_walk_kernel(Params<bf16> p, ChunkDims cd) {
  using Lay = WalkLayout<kD, kNW>;
  constexpr int BV = Lay::BV, ldk = Lay::ldk, ldu = Lay::ldu, lda = Lay::lda, ldo = Lay::ldo;
  constexpr int kKT = kD / 8;  // n-tiles of S^T
  extern __shared__ __align__(128) unsigned char smem_lrw[];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int bh = blockIdx.y, b = bh / p.H, h = bh % p.H, v0 = blockIdx.x * BV;
  const int vw = v0 + 16 * warp;  // first V column of this warp
  const bool active = vw < p.V;
  const int64_t state0 = int64_t(bh) * p.K * p.V;
  bf16* sGq = reinterpret_cast<bf16*>(smem_lrw + Lay::kGq);
  bf16* sKd = reinterpret_cast<bf16*>(smem_lrw + Lay::kKd);
  float* sA = reinterpret_cast<float*>(smem_lrw + Lay::kA);
  float* sG = reinterpret_cast<float*>(smem_lrw + Lay::kG);
  float* sEg = reinterpret_cast<float*>(smem_lrw + Lay::kEg);
  bf16* sO = reinterpret_cast<bf16*>(smem_lrw + Lay::kO) + warp * kC * ldo;

  auto load = [&](int c, int st) {  // chunk c's q, k rows and v tile (zero past T, K, V)
    unsigned char* base = smem_lrw + st * Lay::kStage;
    const int t0 = c * kC, L = min(kC, p.T - t0);
    bf16* const dst[2] = {reinterpret_cast<bf16*>(base + Lay::kQ),
                          reinterpret_cast<bf16*>(base + Lay::kK)};
    const bf16* const src[2] = {p.q, p.k};
    stage_k_rows<kD, Lay::kThreads>(dst, src, ldk, p, b, h, t0, L, tid);
    stage_v_rows<BV, Lay::kThreads>(reinterpret_cast<bf16*>(base + Lay::kU), p.v, ldu, p, b, h, t0,
                                    L, v0, tid);
  };
  auto gates = [&](int c, float(&g)[2]) {  // warp 0: tokens 2 lane, 2 lane + 1 of chunk c
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int t = c * kC + 2 * lane + r;
      g[r] = (kGate == GateKind::kScalar && t < p.T) ? ld(p.g + p.tok(b, t, h)) : 0.f;
    }
  };

  float s[kKT][4];  // S^T: n-tile j holds rows v = vw + c_elem.row, columns k = 8 j + c_elem.col
#pragma unroll
  for (int j = 0; j < kKT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int v = vw + mt::c_elem(lane, e).row, k = 8 * j + mt::c_elem(lane, e).col;
      s[j][e] = (p.h0 && v < p.V && k < p.K) ? p.h0[state0 + int64_t(k) * p.V + v] : 0.f;
    }

  float gnext[2] = {0.f, 0.f};
  if (warp == 0) gates(0, gnext);
  load(0, 0);
  cp_commit();
  for (int c = 0; c < cd.NC; ++c) {
    const float g0 = gnext[0], g1 = gnext[1];
    if (c + 1 < cd.NC) {
      load(c + 1, (c + 1) & 1);  // that stage was released by the last sync
      if (warp == 0) gates(c + 1, gnext);
    }
    cp_commit();
    cp_wait_all_but_one();
    if (warp == 0) {  // G = cumsum(g) over the chunk (tokens past T add 0)
      float x = g0 + g1;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
      }
      sG[2 * lane] = x - g1;
      sG[2 * lane + 1] = x;
    }
    __syncthreads();  // chunk c's stage and G are complete for every thread
    const unsigned char* base = smem_lrw + (c & 1) * Lay::kStage;
    const bf16* sQ = reinterpret_cast<const bf16*>(base + Lay::kQ);
    const bf16* sK = reinterpret_cast<const bf16*>(base + Lay::kK);
    const bf16* sU = reinterpret_cast<const bf16*>(base + Lay::kU);
    const int t0 = c * kC, L = min(kC, p.T - t0);
    const float gl = sG[kC - 1];

    // Gq = scale q exp(G_i), Kd = k exp(G_last - G_i): 8 columns a thread-step.
    for (int e = tid; e < kC * (kD / 8); e += Lay::kThreads) {
      const int i = e / (kD / 8), col = (e % (kD / 8)) * 8;
      const float eq = p.scale * gexp<kGate>(sG[i]), ek = gexp<kGate>(gl - sG[i]);
      const uint4 qr = *reinterpret_cast<const uint4*>(sQ + i * ldk + col);
      const uint4 kr = *reinterpret_cast<const uint4*>(sK + i * ldk + col);
      const __nv_bfloat162* qh = reinterpret_cast<const __nv_bfloat162*>(&qr);
      const __nv_bfloat162* kh = reinterpret_cast<const __nv_bfloat162*>(&kr);
      uint4 gq, kd;
      __nv_bfloat162* gqh = reinterpret_cast<__nv_bfloat162*>(&gq);
      __nv_bfloat162* kdh = reinterpret_cast<__nv_bfloat162*>(&kd);
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        const float2 qv = __bfloat1622float2(qh[m]), kv = __bfloat1622float2(kh[m]);
        gqh[m] = __floats2bfloat162_rn(eq * qv.x, eq * qv.y);
        kdh[m] = __floats2bfloat162_rn(ek * kv.x, ek * kv.y);
      }
      *reinterpret_cast<uint4*>(sGq + i * ldk + col) = gq;
      *reinterpret_cast<uint4*>(sKd + i * ldk + col) = kd;
    }
    for (int d = tid; d < kD; d += Lay::kThreads) sEg[d] = gexp<kGate>(gl);
    // A_qk: the lower Gram tiles (I, J <= I) of Q K^T, times scale exp(G_i - G_j) on and below
    // the diagonal and zero above it (selects: exp(G_i - G_j) may overflow there). The walk reads
    // no tile above the diagonal.
    for (int u = warp; u < 10; u += kNW) {
      const mt::RowCol tile = chunk::intra_tiles::gram_tile(u);
      const int I = tile.row, J = tile.col;
      float acc[2][4] = {};
      attn::warp_nt<16, kD>(acc, sQ + 16 * I * ldk, ldk, sK + 16 * J * ldk, ldk);
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; e += 2) {  // elements e, e + 1: columns j, j + 1 of row i
          const mt::RowCol x = mt::c_elem(lane, e);
          const int i = 16 * I + x.row, j = 16 * J + 8 * nt + x.col;
          const float gi = sG[i];
          *reinterpret_cast<float2*>(sA + i * lda + j) = make_float2(
              j <= i ? p.scale * acc[nt][e] * gexp<kGate>(gi - sG[j]) : 0.f,
              j + 1 <= i ? p.scale * acc[nt][e + 1] * gexp<kGate>(gi - sG[j + 1]) : 0.f);
        }
    }
    __syncthreads();  // the chunk's operands are complete

    if (active) {
      uint32_t sa[kD / 16][4];  // S^T in bf16: A fragments of the k-steps over the state rows
      c_to_a<kD / 16>(s, sa, 1.f);
      float vt[kC / 8][4];  // -V^T, then V^T in bf16 as A fragments over the chunk's tokens
      neg_u_trans(vt, sU, ldu, warp, lane);
      uint32_t va[kC / 16][4];
      c_to_a<kC / 16>(vt, va, -1.f);
      float ot[kC / 8][4];
      o_state<kD, ldk>(ot, sa, sGq, lane);
      o_intra<lda, ldo>(ot, va, sA, sO, p, b, h, t0, L, vw, lane);
      update_state<kD, ldk>(s, va, sKd, sEg, lane);
    }
    __syncthreads();  // every warp is done with the operands and with stage c & 1
  }
  if (p.ht && active) store_state_t(s, p.ht, state0, vw, p.K, p.V, lane);
}

template <int kD, int kNW, GateKind kGate>
void launch_as(const Params<bf16>& p, const ChunkDims& cd, cudaStream_t stream) {
  using Lay = WalkLayout<kD, kNW>;
  auto* kernel = lr_walk_kernel<kD, kNW, kGate>;
  KIMI_CUDA_REQUIRE(Lay::kBytes <= max_smem_optin(), "linear recurrence walk: shared memory");
  KIMI_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Lay::kBytes));
  const dim3 grid(unsigned(ceil_div(p.V, Lay::BV)), unsigned(p.B * p.H));
  kernel<<<grid, Lay::kThreads, Lay::kBytes, stream>>>(p, cd);
  KIMI_CUDA_CHECK_LAUNCH();
}

template <int kD, GateKind kGate>
void launch_w(int warps, const Params<bf16>& p, const ChunkDims& cd, cudaStream_t stream) {
  switch (warps) {
    case 8: return launch_as<kD, 8, kGate>(p, cd, stream);
    case 4: return launch_as<kD, 4, kGate>(p, cd, stream);
    case 2: return launch_as<kD, 2, kGate>(p, cd, stream);
    default: return launch_as<kD, 1, kGate>(p, cd, stream);
  }
}

}  // namespace

bool launch_lr_walk(const Params<bf16>& p, const ChunkDims& cd, cudaStream_t stream) {
  const char* e = std::getenv("KIMI_CUDA_LR_FUSED");
  const std::string_view force = e ? e : "";
  KIMI_CUDA_REQUIRE(!e || force == "0" || force == "1", "KIMI_CUDA_LR_FUSED must be 0 or 1");
  KIMI_CUDA_REQUIRE(force != "1" || p.gate != GateKind::kPerChannel,
                    "KIMI_CUDA_LR_FUSED=1: the one-kernel walk takes a scalar gate or none");
  if (force == "0" || p.gate == GateKind::kPerChannel || !chunk::use_prefetch(p)) return false;
  const int warps = chunk::state_mma_warps(int64_t(p.B) * p.H, p.V, sm_count());
  // V split over blocks: each would build the same operands (the two kernels then, unless forced).
  if (force != "1" && 16 * warps < p.V) return false;
  const bool gated = p.gate == GateKind::kScalar;
  if (cd.D == 64)
    gated ? launch_w<64, GateKind::kScalar>(warps, p, cd, stream)
          : launch_w<64, GateKind::kNone>(warps, p, cd, stream);
  else
    gated ? launch_w<128, GateKind::kScalar>(warps, p, cd, stream)
          : launch_w<128, GateKind::kNone>(warps, p, cd, stream);
  return true;
}

}  // namespace kimi::cuda::detail::lrc
