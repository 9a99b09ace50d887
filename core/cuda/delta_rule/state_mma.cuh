// Pieces shared by the tensor-core state walks of the chunkwise delta rule (not a public API):
// the cp.async operand stages and warp-level fragment helpers of the forward state kernel and the
// backward's F2 stage (delta_rule_chunk_state_mma.cu) and of the backward's B1 dh walk
// (delta_rule_chunk_bwd_dh_mma.cu).
// A warp owns 16 columns of V and holds a transposed K x 16 state (S^T or dS^T) as mma.sync
// m16n8k16 C fragments; the index arithmetic lives in state_mma_tiles.h (checked on the host).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "core/cuda/attention/attention_mma.cuh"
#include "core/cuda/delta_rule/delta_rule_chunk.cuh"
#include "core/cuda/delta_rule/state_mma_tiles.h"

namespace kimi::cuda::detail::chunk::state_mma {

// 16 bytes global -> shared; with ok false nothing is read and the 16 bytes are zero-filled
// (rows past the sequence, columns past K or V), so padded tiles contribute exact zeros.
__device__ __forceinline__ void cp16_or_zero(void* dst, const void* src, bool ok) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src),
               "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most one committed group (the chunk being prefetched) is still in flight.
__device__ __forceinline__ void cp_wait_all_but_one() {
  asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}
__device__ __forceinline__ void cp_wait_all() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// The operand stages of the state walks (forward / F2 and B1), filled by every thread of the
// block (tid of kThreads) with 16-byte cp.async; whatever lies past the chunk's L rows, K or V is
// zero-filled, so padded tiles contribute exact zeros.
// Chunk rows [t0, t0 + L) of kN [B,T,H,K] bf16 tensors into tiles of kC x kD (row stride ldk).
template <int kD, int kThreads, int kN>
__device__ __forceinline__ void stage_k_rows(__nv_bfloat16* const (&dst)[kN],
                                             const __nv_bfloat16* const (&src)[kN], int ldk,
                                             const Params<__nv_bfloat16>& p, int b, int h, int t0,
                                             int L, int tid) {
  constexpr int kVK = kD / 8;  // 16-byte vectors per row
  for (int e = tid; e < kC * kVK; e += kThreads) {
    const int i = e / kVK, col = (e % kVK) * 8;
    const bool ok = i < L && col < p.K;
    const int64_t g = ok ? p.qk(b, t0 + i, h) + col : 0;
#pragma unroll
    for (int n = 0; n < kN; ++n) cp16_or_zero(dst[n] + i * ldk + col, src[n] + g, ok);
  }
}
// Columns [v0, v0 + BV) of the chunk's rows of a [B,T,H,V] bf16 tensor (row stride ldu).
template <int BV, int kThreads>
__device__ __forceinline__ void stage_v_rows(__nv_bfloat16* dst, const __nv_bfloat16* src, int ldu,
                                             const Params<__nv_bfloat16>& p, int b, int h, int t0,
                                             int L, int v0, int tid) {
  constexpr int kVU = BV / 8;
  for (int e = tid; e < kC * kVU; e += kThreads) {
    const int i = e / kVU, col = (e % kVU) * 8;
    const bool ok = i < L && v0 + col < p.V;
    const int64_t g = ok ? p.vo(b, t0 + i, h) + v0 + col : 0;
    cp16_or_zero(dst + i * ldu + col, src + g, ok);
  }
}
// The chunk's A_qk (fp32 kC x kC at a, row stride lda in shared memory). Rows past the sequence
// are not written by the intra kernel: zeros instead.
template <int kThreads>
__device__ __forceinline__ void stage_aqk(float* sA, int lda, const float* a, int L, int tid) {
  for (int e = tid; e < kC * kC / 4; e += kThreads) {
    const int i = e / (kC / 4), col = (e % (kC / 4)) * 4;
    cp16_or_zero(sA + i * lda + col, a + (i < L ? i * kC + col : 0), i < L);
  }
}
// The chunk's exp(G_last) (K floats at eg) into kD floats.
template <int kD, int kThreads>
__device__ __forceinline__ void stage_egl(float* sEg, const float* eg, int K, int tid) {
  for (int e = tid; e < kD / 4; e += kThreads)
    cp16_or_zero(sEg + 4 * e, eg + (4 * e < K ? 4 * e : 0), 4 * e < K);
}

// The two halves of a bf16x2 register as floats, negated (the low half is the lower index).
__device__ __forceinline__ void unpack_neg(float* f, uint32_t r) {
  f[0] = -__uint_as_float(r << 16);
  f[1] = -__uint_as_float(r & 0xffff0000u);
}

// C fragments of 2 N adjacent n-tiles (times `sign`) as the bf16 A fragments of N k-steps.
template <int N>
__device__ __forceinline__ void c_to_a(const float (&c)[2 * N][4], uint32_t (&a)[N][4],
                                       float sign) {
#pragma unroll
  for (int ks = 0; ks < N; ++ks) {
    a[ks][0] = attn::pack_bf16(sign * c[2 * ks][0], sign * c[2 * ks][1]);
    a[ks][1] = attn::pack_bf16(sign * c[2 * ks][2], sign * c[2 * ks][3]);
    a[ks][2] = attn::pack_bf16(sign * c[2 * ks + 1][0], sign * c[2 * ks + 1][1]);
    a[ks][3] = attn::pack_bf16(sign * c[2 * ks + 1][2], sign * c[2 * ks + 1][3]);
  }
}

// acc (16 x kC, n-tiles of tokens) += S^T X^T for X = a tile [kC tokens][kD] (row stride ldk)
// and S^T given as the A fragments sa: B fragments of n-tile nt, k-steps 2 kk and 2 kk + 1.
template <int kD, int ldk>
__device__ __forceinline__ void add_state_times_rows(float (&acc)[kC / 8][4],
                                                     const uint32_t (&sa)[kD / 16][4],
                                                     const __nv_bfloat16* x, int lane) {
#pragma unroll
  for (int kk = 0; kk < kD / 32; ++kk)
#pragma unroll
    for (int nt = 0; nt < kC / 8; ++nt) {
      uint32_t r[4];
      const mma_tiles::RowCol a = mma_tiles::rows_nt(lane, nt, kk);
      attn::ldsm4(r, x + a.row * ldk + a.col);
      attn::mma_bf16(acc[nt], sa[2 * kk], r[0], r[1]);
      attn::mma_bf16(acc[nt], sa[2 * kk + 1], r[2], r[3]);
    }
}

// The inverse of c_to_a (sign 1): bf16 A fragments of N k-steps as the floats of 2 N n-tiles.
template <int N>
__device__ __forceinline__ void a_to_c(const uint32_t (&a)[N][4], float (&c)[2 * N][4]) {
#pragma unroll
  for (int ks = 0; ks < N; ++ks)
#pragma unroll
    for (int r = 0; r < 4; ++r) {  // register r: n-tile 2 ks + r / 2, elements 2 (r % 2), +1
      c[2 * ks + r / 2][2 * (r % 2)] = __uint_as_float(a[ks][r] << 16);
      c[2 * ks + r / 2][2 * (r % 2) + 1] = __uint_as_float(a[ks][r] & 0xffff0000u);
    }
}

// C fragments of N n-tiles of a transposed result X^T (times `sign`) into a warp's staging tile
// [8 N rows][16 columns] (bf16, row stride ldo), at the places mma_tiles::stage_at gives.
template <int N, int ldo>
__device__ __forceinline__ void stage_tile(__nv_bfloat16* sT, const float (&x)[N][4], float sign,
                                           int lane) {
#pragma unroll
  for (int nt = 0; nt < N; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const mma_tiles::RowCol at = mma_tiles::stage_at(lane, nt, e);
      sT[at.row * ldo + at.col] = __float2bfloat16(sign * x[nt][e]);
    }
}

// Named barrier `id` (1..15) of n threads, n a multiple of 32: bar_arrive signals and goes on
// (the producer), bar_sync waits until all n have arrived (the consumer). Shared-memory writes
// before the arrive are visible to the consumer after its sync.
__device__ __forceinline__ void bar_arrive(int id, int n) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void bar_sync(int id, int n) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

// A warp's A fragments (N k-steps) to or from shared words [i][lane], so that a partner warp's
// lane gets exactly the registers of the same lane (no layout to agree on; 32 consecutive words
// per access, no bank conflicts).
template <int N>
__device__ __forceinline__ void frags_out(const uint32_t (&a)[N][4], uint32_t* x, int lane) {
#pragma unroll
  for (int i = 0; i < 4 * N; ++i) x[i * 32 + lane] = a[i / 4][i % 4];
}
template <int N>
__device__ __forceinline__ void frags_in(uint32_t (&a)[N][4], const uint32_t* x, int lane) {
#pragma unroll
  for (int i = 0; i < 4 * N; ++i) a[i / 4][i % 4] = x[i * 32 + lane];
}

// A warp's staging tile of `rows` rows (16 columns, stride ldo) to global rows `dst(r)` (an
// element offset, the warp's first column included), rows < nrows and columns < ncols only.
template <int kRows, int ldo, class Dst>
__device__ __forceinline__ void write_stage(const __nv_bfloat16* sT, int nrows, int ncols, int lane,
                                            Dst dst) {
#pragma unroll
  for (int i = lane; i < 2 * kRows; i += 32) {
    const mma_tiles::RowCol x = mma_tiles::stage_piece(i);
    if (x.row < nrows && x.col < ncols)
      *reinterpret_cast<uint4*>(dst(x.row) + x.col) =
          *reinterpret_cast<const uint4*>(sT + x.row * ldo + x.col);
  }
}

// C fragments of N n-tiles (times `sign`, rounded to bf16) to global rows dst(r) < nrows,
// columns < ncols, through the warp's staging tile.
template <int N, int ldo, class Dst>
__device__ __forceinline__ void store_c_tile(__nv_bfloat16* sT, const float (&c)[N][4], float sign,
                                             int nrows, int ncols, int lane, Dst dst) {
  stage_tile<N, ldo>(sT, c, sign, lane);
  __syncwarp();
  write_stage<8 * N, ldo>(sT, nrows, ncols, lane, dst);
  __syncwarp();
}

// A partner warp's store of what its chain warp handed over as bf16 A fragments (N k-steps, at
// words x, once barrier `bar` completes): the same bf16 values the chain warp would have stored.
template <int N, int ldo, class Dst>
__device__ __forceinline__ void store_handed(const uint32_t* x, int bar, float sign,
                                             __nv_bfloat16* sT, int nrows, int ncols, int lane,
                                             Dst dst) {
  uint32_t a[N][4];
  float c[2 * N][4];
  bar_sync(bar, 64);
  frags_in(a, x, lane);
  a_to_c<N>(a, c);
  store_c_tile<2 * N, ldo>(sT, c, sign, nrows, ncols, lane, dst);
}

// -U^T of the warp's 16 columns as C fragments of the chunk's token n-tiles: ldmatrix.trans of
// matrices (tokens 16 q | +8) x (the warp's columns | +8) of the U tile [tokens][V tile columns]
// (row stride ldu): c0c1, c2c3 of n-tiles 2q, 2q+1.
__device__ __forceinline__ void neg_u_trans(float (&vt)[kC / 8][4], const __nv_bfloat16* sU,
                                            int ldu, int warp, int lane) {
#pragma unroll
  for (int q = 0; q < kC / 16; ++q) {
    uint32_t r[4];
    const mma_tiles::RowCol a = mma_tiles::u_trans(lane, q, warp);
    attn::ldsm4_t(r, sU + a.row * ldu + a.col);
    unpack_neg(&vt[2 * q][0], r[0]);
    unpack_neg(&vt[2 * q][2], r[1]);
    unpack_neg(&vt[2 * q + 1][0], r[2]);
    unpack_neg(&vt[2 * q + 1][2], r[3]);
  }
}

// S^T <- S^T diag(exp(G_last)) + V'^T Kd for a warp's 16 columns (S^T as the C fragments of
// kD / 8 n-tiles, V'^T as bf16 A fragments of the chunk's token k-steps, Kd [tokens][k] rows of
// stride ldk, exp(G_last) as kD floats). B of token k-step ks, n-tiles 2jp, 2jp+1: ldmatrix.trans
// of matrices (tokens 16 ks | +8) x (k 16 jp | +8).
template <int kD, int ldk>
__device__ __forceinline__ void update_state(float (&s)[kD / 8][4],
                                             const uint32_t (&va)[kC / 16][4],
                                             const __nv_bfloat16* sKd, const float* sEg, int lane) {
#pragma unroll
  for (int j = 0; j < kD / 8; ++j) {  // columns k = 8 j + c_elem.col of elements 0, 1 (2, 3)
    const float2 e = *reinterpret_cast<const float2*>(sEg + 8 * j + mma_tiles::c_elem(lane, 0).col);
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
      const mma_tiles::RowCol a = mma_tiles::kd_trans(lane, ks, jp);
      attn::ldsm4_t(r, sKd + a.row * ldk + a.col);
      attn::mma_bf16(s[2 * jp], va[ks], r[0], r[1]);
      attn::mma_bf16(s[2 * jp + 1], va[ks], r[2], r[3]);
    }
}

// A warp's transposed state (C fragments of kKT n-tiles: rows v = vw + c_elem.row, columns
// k = 8 j + c_elem.col) into the [K][V] fp32 state at st + at, the entries inside K x V only.
template <int kKT>
__device__ __forceinline__ void store_state_t(const float (&s)[kKT][4], float* st, int64_t at,
                                              int vw, int K, int V, int lane) {
#pragma unroll
  for (int j = 0; j < kKT; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int v = vw + mma_tiles::c_elem(lane, e).row, k = 8 * j + mma_tiles::c_elem(lane, e).col;
      if (v < V && k < K) st[at + int64_t(k) * V + v] = s[j][e];
    }
}

// O^T = S^T Gq^T + V'^T A_qk^T for one warp's 16 columns, in two halves (S^T and V'^T as bf16
// A fragments): o_state (ot = S^T Gq^T) and o_intra (ot += V'^T A_qk^T, then O to global through
// the warp's staging tile). A_qk is zero above the diagonal, so n-tile nt (tokens 8 nt..8 nt+7)
// needs the token k-steps up to nt / 2 only.
template <int kD, int ldk>
__device__ __forceinline__ void o_state(float (&ot)[kC / 8][4], const uint32_t (&sa)[kD / 16][4],
                                        const __nv_bfloat16* sGq, int lane) {
#pragma unroll
  for (int nt = 0; nt < kC / 8; ++nt) ot[nt][0] = ot[nt][1] = ot[nt][2] = ot[nt][3] = 0.f;
  add_state_times_rows<kD, ldk>(ot, sa, sGq, lane);
}
template <int lda, int ldo>
__device__ __forceinline__ void o_intra(float (&ot)[kC / 8][4], const uint32_t (&va)[kC / 16][4],
                                        const float* sA, __nv_bfloat16* sO,
                                        const Params<__nv_bfloat16>& p, int b, int h, int t0, int L,
                                        int vw, int lane) {
#pragma unroll
  for (int nt = 0; nt < kC / 8; ++nt)
#pragma unroll
    for (int ks = 0; ks <= nt / 2; ++ks) {
      const mma_tiles::RowCol a = mma_tiles::aqk_b(lane, nt, ks, 0);
      const float2 lo = *reinterpret_cast<const float2*>(sA + a.row * lda + a.col);
      const float2 hi = *reinterpret_cast<const float2*>(sA + a.row * lda + a.col + 8);
      attn::mma_bf16(ot[nt], va[ks], attn::pack_bf16(lo.x, lo.y), attn::pack_bf16(hi.x, hi.y));
    }
  store_c_tile<kC / 8, ldo>(sO, ot, 1.f, L, p.V - vw, lane,
                            [&](int t) { return p.o + p.vo(b, t0 + t, h) + vw; });
}

}  // namespace kimi::cuda::detail::chunk::state_mma
