// The MLA decode attention (mla_decode.cu's attend step) on tensor cores: per (sequence, split)
// block, tiles of 64 cached rows go through shared memory once (cp.async, double-buffered) and
// serve every head twice over, as bf16 mma.sync m16n8k16 operands with fp32 accumulation:
//   scores [H, 64]   = Q [H, D] . tile^T        (Q = the absorbed queries, rounded to bf16 once)
//   O      [H, rank] = O * alpha + P [H, 64] . tile[:, :rank]   (P = exp(scores - m), bf16)
// The online softmax (max, sum, rescale alpha) runs in fp32; the sum adds the bf16-rounded
// probabilities, the same values the product uses, so each split's output is an exact convex
// combination of rows with weights off by at most the bf16 rounding of p (2^-9 relative).
// Outputs part_o / part_ml as the fp32 kernel: merge_kernel is shared.
//
// Why this shape: at long contexts the fp32 kernel was compute-bound (~1.7 TFLOP/s); here a row
// costs ~70 kFLOP of mma (32 heads) against 1152 bytes of HBM, below the tensor cores' ratio, so
// the kernel can run at the cache's read bandwidth. One 8-warp block per SM (~196 KB of shared
// memory for H=32, rank 512): one tile in flight (72 KB) while the other is computed covers
// the HBM latency at the per-SM bandwidth.
//
// Limits (else mla_attend falls back to the fp32 kernel): H = 16 or 32 (one or two 16-row mma
// tiles of heads), rank a multiple of 128 up to 512 (8 warps x an even number of 8-column mma
// tiles), rope a multiple of 16 (the k-steps of the score product), shared memory within the
// device's opt-in limit.
#include <cfloat>
#include <cstdint>

#include "core/cuda/runtime/check.h"
#include "inference/engine/cuda/engine_common.cuh"

namespace kimi::inference::engine::cuda {
namespace {

constexpr int kWarps = 8, kThreads = kWarps * 32, kT = 64;
// Shared rows padded by 16 bytes: ldmatrix's 8 row addresses then fall on different banks.
constexpr int kPad = 8, kSld = kT + 8, kPld = kT + 8;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldsm_x2(uint32_t& r0, uint32_t& r1, const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(smem_addr(p)));
}

// c += a (16x16, row) * b (16x8, col), bf16 in, fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes global -> shared; src_bytes 0 writes zeros and reads nothing.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

int64_t tc_smem_bytes(int H, int rank, int rope) {
  const int64_t ld = rank + rope + kPad;
  return (H * ld + 2 * kT * ld) * 2 + H * kSld * 4 + H * kPld * 2 + H * 4;
}

// MT: 16-head mma tiles (H = 16 MT); NT: 8-column mma tiles per warp in P.tile (rank = 64 NT).
template <int MT, int NT>
__global__ void __launch_bounds__(kThreads, 1) attend_tc_kernel(MlaStep a) {
  constexpr int H = 16 * MT, R = 64 * NT, HPW = H / kWarps;
  static_assert(NT % 2 == 0, "P.tile's B fragments come in pairs of 8-column tiles");
  extern __shared__ __align__(16) unsigned char smem[];
  const int D = R + a.rope, ld = D + kPad, ks_n = D / 16;
  bf16* q_s = reinterpret_cast<bf16*>(smem);                  // [H, ld]
  bf16* c_s = q_s + H * ld;                                   // [2][kT, ld]
  float* s_s = reinterpret_cast<float*>(c_s + 2 * kT * ld);   // [H, kSld] scores
  bf16* p_s = reinterpret_cast<bf16*>(s_s + H * kSld);        // [H, kPld] probabilities
  float* alpha_s = reinterpret_cast<float*>(p_s + H * kPld);  // [H] this tile's rescale
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, c2 = (lane & 3) * 2;  // mma fragment row / column pair
  const int b = blockIdx.x, split = blockIdx.y;
  const int64_t slot = a.slots[b];
  const int n = a.lengths[slot] + 1;
  const int chunk = ((n + a.splits - 1) / a.splits + kT - 1) / kT * kT;
  const int t0 = split * chunk, t1 = min(n, t0 + chunk);
  const int64_t base = (static_cast<int64_t>(b) * a.splits + split) * H;
  if (t0 >= t1) {  // past the end of a short sequence: merge_kernel skips l = 0 (and part_o)
    for (int h = threadIdx.x; h < H; h += kThreads)
      a.part_ml[(base + h) * 2] = -FLT_MAX, a.part_ml[(base + h) * 2 + 1] = 0.f;
    return;
  }
  const bf16* rows = a.cache + slot * a.max_tokens * D;
  // Rows at or past t1 become zeros (never read: rows past the slot's length may hold
  // anything, NaN included, and 0 * NaN would reach the accumulators); their scores are masked.
  auto load_tile = [&](int t, int stage) {
    bf16* dst = c_s + stage * kT * ld;
    const int pieces = D / 8;
    for (int i = threadIdx.x; i < kT * pieces; i += kThreads) {
      const int r = i / pieces, p = i - r * pieces;
      const bool ok = t + r < t1;
      cp_async16(dst + r * ld + p * 8, rows + static_cast<int64_t>(ok ? t + r : t0) * D + p * 8,
                 ok ? 16 : 0);
    }
    cp_async_commit();
  };
  load_tile(t0, 0);
  {
    const float4* qg = reinterpret_cast<const float4*>(a.qa + static_cast<int64_t>(b) * H * D);
    for (int i = threadIdx.x; i < H * D / 4; i += kThreads) {
      const float4 v = qg[i];
      const int h = 4 * i / D, e = 4 * i - h * D;
      __nv_bfloat162* d = reinterpret_cast<__nv_bfloat162*>(q_s + h * ld + e);
      d[0] = __floats2bfloat162_rn(v.x, v.y), d[1] = __floats2bfloat162_rn(v.z, v.w);
    }
  }
  // The running max and sum of heads warp * HPW + i, the same in every lane.
  float m_run[HPW], l_run[HPW];
#pragma unroll
  for (int i = 0; i < HPW; ++i) m_run[i] = -FLT_MAX, l_run[i] = 0.f;
  float acc[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[mt][nt][j] = 0.f;
  // Scores: warp -> head tile smt, rows srow .. srow + 8 MT of the tile (MT 8-row mma tiles).
  const int smt = warp % MT, srow = warp / MT * 8 * MT;
  // P.tile: warp -> columns ocol .. ocol + 8 NT of the rank.
  const int ocol = warp * 8 * NT;
  const int ntiles = (t1 - t0 + kT - 1) / kT;
  for (int it = 0; it < ntiles; ++it) {
    const int t = t0 + it * kT;
    const bf16* tile = c_s + (it & 1) * kT * ld;
    cp_async_wait_all();
    // (A) this tile (and, the first time, Q) visible; every warp is past the previous tile's
    // P.tile, so its stage may be refilled and s_s rewritten.
    __syncthreads();
    if (it + 1 < ntiles) load_tile(t + kT, (it + 1) & 1);
    float sacc[MT][4];
#pragma unroll
    for (int j = 0; j < MT; ++j) sacc[j][0] = sacc[j][1] = sacc[j][2] = sacc[j][3] = 0.f;
    const bf16* qa_row = q_s + (smt * 16 + (lane & 15)) * ld + (lane >> 4) * 8;
    const bf16* c_row = tile + (srow + (lane & 7)) * ld + ((lane >> 3) & 1) * 8;
#pragma unroll 4
    for (int ks = 0; ks < ks_n; ++ks) {
      uint32_t af[4];
      ldsm_x4(af, qa_row + ks * 16);
#pragma unroll
      for (int j = 0; j < MT; ++j) {
        uint32_t b0, b1;
        ldsm_x2(b0, b1, c_row + j * 8 * ld + ks * 16);
        mma_bf16(sacc[j], af, b0, b1);
      }
    }
#pragma unroll
    for (int j = 0; j < MT; ++j) {
      const int col = srow + j * 8 + c2, h = smt * 16 + g;
      const bool v0 = t + col < t1, v1 = t + col + 1 < t1;
      s_s[h * kSld + col] = v0 ? sacc[j][0] : -INFINITY;
      s_s[h * kSld + col + 1] = v1 ? sacc[j][1] : -INFINITY;
      s_s[(h + 8) * kSld + col] = v0 ? sacc[j][2] : -INFINITY;
      s_s[(h + 8) * kSld + col + 1] = v1 ? sacc[j][3] : -INFINITY;
    }
    __syncthreads();  // (B) the score tile complete
#pragma unroll
    for (int i = 0; i < HPW; ++i) {
      const int h = warp * HPW + i;
      const float x0 = s_s[h * kSld + lane], x1 = s_s[h * kSld + lane + 32];
      const float m_new = fmaxf(m_run[i], warp_max(fmaxf(x0, x1)));  // finite: row t is valid
      const bf16 p0 = __float2bfloat16(__expf(x0 - m_new)),
                 p1 = __float2bfloat16(__expf(x1 - m_new));
      p_s[h * kPld + lane] = p0, p_s[h * kPld + lane + 32] = p1;
      const float alpha = __expf(m_run[i] - m_new);
      l_run[i] = l_run[i] * alpha + warp_sum(__bfloat162float(p0) + __bfloat162float(p1));
      m_run[i] = m_new;
      if (lane == 0) alpha_s[h] = alpha;
    }
    __syncthreads();  // (C) P and alpha complete
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const float lo = alpha_s[mt * 16 + g], hi = alpha_s[mt * 16 + g + 8];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
        acc[mt][nt][0] *= lo, acc[mt][nt][1] *= lo, acc[mt][nt][2] *= hi, acc[mt][nt][3] *= hi;
    }
#pragma unroll
    for (int kk = 0; kk < kT / 16; ++kk) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        ldsm_x4(pa[mt], p_s + (mt * 16 + (lane & 15)) * kPld + kk * 16 + (lane >> 4) * 8);
      // Rows kk*16 .. +16 of the tile as B [k = row, n = column]: the transposed ldmatrix gives
      // the column-major fragments of two 8-column tiles at once.
      const bf16* v_row = tile + (kk * 16 + (lane & 15)) * ld + ocol + (lane >> 4) * 8;
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t bf[4];
        ldsm_x4_trans(bf, v_row + np * 16);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(acc[mt][2 * np], pa[mt], bf[0], bf[1]);
          mma_bf16(acc[mt][2 * np + 1], pa[mt], bf[2], bf[3]);
        }
      }
    }
  }
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int h = mt * 16 + g, col = ocol + nt * 8 + c2;
      float* o = a.part_o + (base + h) * R + col;
      *reinterpret_cast<float2*>(o) = make_float2(acc[mt][nt][0], acc[mt][nt][1]);
      *reinterpret_cast<float2*>(o + 8 * R) = make_float2(acc[mt][nt][2], acc[mt][nt][3]);
    }
  if (lane == 0)
#pragma unroll
    for (int i = 0; i < HPW; ++i) {
      const int h = warp * HPW + i;
      a.part_ml[(base + h) * 2] = m_run[i], a.part_ml[(base + h) * 2 + 1] = l_run[i];
    }
}

template <int MT, int NT>
void launch(const MlaStep& a, cudaStream_t s) {
  const int64_t smem = tc_smem_bytes(16 * MT, 64 * NT, a.rope);
  static int64_t configured = 0;  // per instantiation; raised when a larger rope needs more
  if (smem > 48 * 1024 && smem > configured) {
    KIMI_CUDA_CHECK(cudaFuncSetAttribute(attend_tc_kernel<MT, NT>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem)));
    configured = smem;
  }
  attend_tc_kernel<MT, NT><<<dim3(a.B, a.splits), kThreads, smem, s>>>(a);
  KIMI_CUDA_CHECK_LAUNCH();
}

int optin_smem() {
  static const int v = [] {
    int dev = 0, bytes = 0;
    KIMI_CUDA_CHECK(cudaGetDevice(&dev));
    KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    return bytes;
  }();
  return v;
}

}  // namespace

bool mla_attend_tc_fits(int H, int rank, int rope) {
  if (H != 16 && H != 32) return false;
  if (rank % 128 != 0 || rank > 512 || rope < 0 || rope % 16 != 0) return false;
  return tc_smem_bytes(H, rank, rope) <= optin_smem();
}

void mla_attend_tc(const MlaStep& a, cudaStream_t s) {
  KIMI_CUDA_REQUIRE(mla_attend_tc_fits(a.H, a.rank, a.rope),
                    "mla_attend_tc: H 16 or 32, rank a multiple of 128 up to 512, rope a multiple "
                    "of 16");
  const int nt = a.rank / 64;
  if (a.H == 32) {
    if (nt == 8) return launch<2, 8>(a, s);
    if (nt == 4) return launch<2, 4>(a, s);
    return launch<2, 2>(a, s);
  }
  if (nt == 8) return launch<1, 8>(a, s);
  if (nt == 4) return launch<1, 4>(a, s);
  return launch<1, 2>(a, s);
}

}  // namespace kimi::inference::engine::cuda
