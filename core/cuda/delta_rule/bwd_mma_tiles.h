// Fragment index arithmetic of the chunk backward's per-chunk products on bf16 tensor cores
// (B2 _dhv.cu, B3 delta_rule_chunk_bwd_wy.cu, B4 _gram.cu through bwd_mma.cuh): a warp
// computes a 16 x 16 tile of op(A) op(B) from fp32 shared tiles as two mma.sync m16n8k16 per
// k-step of 16, gathering each lane's fragment elements straight from shared memory (no
// ldmatrix: the tiles stay fp32 for the elementwise passes around the products and are rounded
// to bf16 as they are gathered). Plain C++, so that tests/bwd_mma_tiles_test.cpp runs the same
// gathers on the host against an emulated mma.sync (tests/mma_emulation.h) and a plain product.
// Layouts (PTX ISA, "warp-level matrix fragments", m16n8k16 .bf16): lane l, g = l / 4,
// t = l % 4; A register r (pairs h = 0, 1): row g + 8 (r % 2), column 2 t + h + 8 (r / 2);
// B register r: row (k) 2 t + h + 8 r, column (n) g; C element e: row g + 8 (e / 2), column
// 2 t + e % 2.
#pragma once

#include "core/cuda/delta_rule/state_mma_tiles.h"

namespace kimi::cuda::detail::chunk::bwd_mma_tiles {

using mma_tiles::RowCol;

// (row, k) inside the 16 x 16 A tile of lane `lane`, register r, half h.
KIMI_MMA_HD RowCol a_elem(int lane, int r, int h) {
  return {(lane >> 2) + 8 * (r & 1), 2 * (lane & 3) + h + 8 * (r >> 1)};
}
// (k, n) inside the 16 x 8 B tile.
KIMI_MMA_HD RowCol b_elem(int lane, int r, int h) {
  return {2 * (lane & 3) + h + 8 * r, lane >> 2};
}
// (row, column) inside the 16 x 8 C tile.
KIMI_MMA_HD RowCol c_elem(int lane, int e) {
  return {(lane >> 2) + 8 * (e >> 1), 2 * (lane & 3) + (e & 1)};
}

// The A fragment of k-step k0 of op(A) (16 rows from a): op(A) = A stored row-major (16 x kdim,
// stride lda) or, with kAT, A^T for A stored kdim x 16 (stride lda).
template <bool kAT>
KIMI_MMA_HD void gather_a(const float* a, int lda, int k0, int lane, float (&f)[4][2]) {
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const RowCol e = a_elem(lane, r, h);
      const int k = k0 + e.col;
      f[r][h] = kAT ? a[k * lda + e.row] : a[e.row * lda + k];
    }
}

// The B fragment of k-step k0, columns n0..n0+7 of op(B): op(B) = B stored kdim x N (stride
// ldb) or, with kBT, B^T for B stored N x kdim.
template <bool kBT>
KIMI_MMA_HD void gather_b(const float* b, int ldb, int k0, int n0, int lane, float (&f)[2][2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const RowCol e = b_elem(lane, r, h);
      const int k = k0 + e.row, n = n0 + e.col;
      f[r][h] = kBT ? b[n * ldb + k] : b[k * ldb + n];
    }
}

}  // namespace kimi::cuda::detail::chunk::bwd_mma_tiles
