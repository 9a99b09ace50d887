// The chunk backward's per-chunk products (B2 delta_rule_chunk_bwd_dhv.cu, B3 _wy.cu, B4
// delta_rule_chunk_bwd_gram.cu) on bf16 tensor cores: mma.sync m16n8k16 with fp32 accumulators,
// operands gathered from the fp32 shared tiles the elementwise passes around the products work
// on and rounded to bf16 on the way (the WMMA TF32 path of delta_rule_chunk_bwd.cuh takes 8-deep
// k-steps and a TF32 conversion of every fragment; this one 16-deep steps with half the
// operand registers). Index arithmetic in bwd_mma_tiles.h (checked on the host).
#pragma once

#include <cstdint>

#include "core/cuda/attention/attention_mma.cuh"
#include "core/cuda/delta_rule/bwd_mma_tiles.h"
#include "core/cuda/delta_rule/delta_rule_chunk.cuh"

namespace kimi::cuda::detail::chunk::bwd_mma {

// acc (a 16 x 16 tile: n-tiles 0..7 and 8..15) += op(A) op(B) over kdim (a multiple of 16);
// pointers and transposition flags as mma_16x16 (delta_rule_chunk.cuh).
template <bool kAT, bool kBT>
__device__ __forceinline__ void mma_16x16_bf16(float (&acc)[2][4], const float* a, int lda,
                                               const float* b, int ldb, int kdim) {
  const int lane = threadIdx.x & 31;
#pragma unroll 2
  for (int k0 = 0; k0 < kdim; k0 += 16) {
    float fa[4][2], fb[2][2][2];
    bwd_mma_tiles::gather_a<kAT>(a, lda, k0, lane, fa);
    bwd_mma_tiles::gather_b<kBT>(b, ldb, k0, 0, lane, fb[0]);
    bwd_mma_tiles::gather_b<kBT>(b, ldb, k0, 8, lane, fb[1]);
    const uint32_t ua[4] = {
        attn::pack_bf16(fa[0][0], fa[0][1]), attn::pack_bf16(fa[1][0], fa[1][1]),
        attn::pack_bf16(fa[2][0], fa[2][1]), attn::pack_bf16(fa[3][0], fa[3][1])};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
      attn::mma_bf16(acc[nt], ua, attn::pack_bf16(fb[nt][0][0], fb[nt][0][1]),
                     attn::pack_bf16(fb[nt][1][0], fb[nt][1][1]));
  }
}

__device__ __forceinline__ void zero_16x16(float (&acc)[2][4]) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] = 0.f;
}

// c (16 x 16, stride ldc) = alpha acc, or += alpha acc with `accumulate` (each element belongs
// to one lane: no other lane reads it).
__device__ __forceinline__ void store_16x16(float* c, int ldc, const float (&acc)[2][4],
                                            float alpha = 1.f, bool accumulate = false) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const mma_tiles::RowCol x = bwd_mma_tiles::c_elem(lane, e);
      float* p = c + x.row * ldc + 8 * nt + x.col;
      *p = accumulate ? *p + alpha * acc[nt][e] : alpha * acc[nt][e];
    }
}

// block_gemm (delta_rule_chunk_bwd.cuh) on bf16 operands: C (M x N) = alpha op(A) op(B)
// (+ C with `accumulate`), M, N multiples of 16, kdim of 16, 16 x 16 tiles over the warps.
template <bool kAT, bool kBT>
__device__ __forceinline__ void block_gemm_bf16(float* C, int ldc, const float* A, int lda,
                                                const float* B, int ldb, int M, int N, int kdim,
                                                float alpha, bool accumulate) {
  const int warp = threadIdx.x / 32, nw = blockDim.x / 32;
  const int tn = N / kBS, ntiles = (M / kBS) * tn;
  for (int t = warp; t < ntiles; t += nw) {
    const int I = t / tn, J = t % tn;
    float acc[2][4];
    zero_16x16(acc);
    mma_16x16_bf16<kAT, kBT>(acc, kAT ? A + I * kBS : A + I * kBS * lda, lda,
                             kBT ? B + J * kBS * ldb : B + J * kBS, ldb, kdim);
    store_16x16(C + I * kBS * ldc + J * kBS, ldc, acc, alpha, accumulate);
  }
}

}  // namespace kimi::cuda::detail::chunk::bwd_mma
