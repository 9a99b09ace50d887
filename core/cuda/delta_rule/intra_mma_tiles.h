// Index arithmetic of the tensor-core KDA intra kernel (delta_rule_chunk_intra_mma.cu): which
// fragment element a lane builds, which Gram tile and which W / U rows a warp owns, and where
// the per-channel decays of a tile are split. Plain C++ so that tests/intra_mma_tiles_test.cpp
// runs the kernel's arithmetic on the host against mma.sync m16n8k16 and ldmatrix emulated as
// the PTX ISA defines them (the GPU is lent; index slips are cheaper to find here).
// Fragments of mma.m16n8k16 (g = lane / 4, t = lane % 4): A register r holds row g + 8 (r & 1),
// columns 2t + 8 (r >> 1), +1; B register r holds column n = g, rows k = 2t + 8 r, +1; C element
// e is row g + 8 (e >> 1), column 2t + (e & 1) (mma_tiles::c_elem).
#pragma once

#include "core/cuda/delta_rule/state_mma_tiles.h"

namespace kimi::cuda::detail::chunk::intra_tiles {

using mma_tiles::RowCol;

// Element pair (col, col + 1) of A register r (0..3) of a 16 x 16 tile.
KIMI_MMA_HD RowCol a_pair(int lane, int r) {
  return {lane / 4 + 8 * (r & 1), 2 * (lane % 4) + 8 * (r >> 1)};
}

// Element pair of B register r (0, 1) of an 8-column n-tile, given as the rows of R = B^T
// (row = n, col = k): the Gram products take B = R^T with R = decayed keys [tokens][channels].
KIMI_MMA_HD RowCol b_pair(int lane, int r) { return {lane / 4, 2 * (lane % 4) + 8 * r}; }

// ldmatrix.trans address of a lane for the B fragments of k-step ks (rows 16 ks..) and the
// n-tiles 2 n16, 2 n16 + 1 (columns 16 n16..) of a row-major [k][n] tile: matrices (rows lo |
// hi) x (columns lo | hi) in the order (lo, lo), (hi, lo), (lo, hi), (hi, hi).
KIMI_MMA_HD RowCol rhs_trans(int lane, int ks, int n16) {
  return {16 * ks + (lane & 7) + ((lane >> 3) & 1) * 8, 16 * n16 + (lane >> 4) * 8};
}

// The 10 lower 16 x 16 tiles (I, J <= I) of the 64 x 64 Gram matrices, tile u = 0..9.
KIMI_MMA_HD RowCol gram_tile(int u) {
  const int I = u < 1 ? 0 : u < 3 ? 1 : u < 6 ? 2 : 3;
  return {I, u - I * (I + 1) / 2};
}

// Where exp(G_i - G_j) of tile (I, J) is split, exp(G_i - G_ref) exp(G_ref - G_j), so that the
// two factors become bf16 operands. Below the diagonal the last row of block J: with log decays
// <= 0 (G non-increasing) both factors are <= 1 and a factor underflows only where the product
// does. On the diagonal the middle row: factors reach exp(+-span), span = max |G_i - G_ref|
// over the block's rows and channels, so the kernel takes the exact fp32 path for a block whose
// span exceeds kMaxSplitExp (bf16 and fp32 overflow near e^88; the margin covers |k|, |q| and
// the masked upper entries' e^(2 span)).
KIMI_MMA_HD int gate_ref_row(int I, int J) { return I == J ? 16 * J + 8 : 16 * J + 15; }
constexpr float kMaxSplitExp = 40.f;

// W = Tinv Rk and U = Tinv Rv in units of (16 rows I, 64 columns): groups of 64 columns, W's
// kD / 64 then U's; kNW / groups warps share a group and split its row blocks so that each does
// the same number of k-steps (row block I needs I + 1): 2 warps {0, 3} and {1, 2}, 4 warps one
// block each. Returns the n-th row block of warp w (-1: none), and the group in *grp.
KIMI_MMA_HD int wu_row_block(int kD, int kNW, int w, int n, int* grp) {
  const int groups = 2 * (kD / 64), per = kNW / groups, s = w / groups;
  *grp = w % groups;
  if (per == 2) return n == 0 ? (s == 0 ? 0 : 1) : n == 1 ? (s == 0 ? 3 : 2) : -1;
  if (per == 4) return n == 0 ? s : -1;
  return per == 1 ? (n < 4 ? n : -1) : -1;
}

}  // namespace kimi::cuda::detail::chunk::intra_tiles
