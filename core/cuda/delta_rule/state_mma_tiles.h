// Where the lanes of a warp point ldmatrix in the tensor-core state kernels
// (delta_rule_chunk_state_mma.cu, and the backward's dh walk delta_rule_chunk_bwd_dh_mma.cu), and
// which element of a 16 x 8 tile a C fragment register is. Plain C++ so that
// tests/state_mma_tiles_test.cpp can run the kernel's index arithmetic on the host against an
// emulation of ldmatrix and mma.sync m16n8k16 (PTX ISA, "warp-level matrix fragments"): the GPU is
// lent, index slips are cheaper to find here. ldmatrix .x4: lane l gives the address of row l % 8
// of matrix l / 8 (8 rows of 8 b16 each); every lane then holds, of each matrix i, register i = row
// l / 4, columns 2 (l % 4), +1
// (.trans: of the transposed matrix). Tiles are row-major in shared memory; RowCol is the
// (row, first column) of the 8-element row piece that a lane points at.
#pragma once

#if defined(__CUDACC__)
#define KIMI_MMA_HD __host__ __device__ __forceinline__
#else
#define KIMI_MMA_HD inline
#endif

namespace kimi::cuda::detail::chunk::mma_tiles {

struct RowCol {
  int row, col;
};

// U tile [tokens][V tile columns], .trans: matrices (tokens 16 q | +8) x (the warp's 16 columns
// 16 w | +8) in the order (lo, lo), (lo, hi), (hi, lo), (hi, hi) give registers c0c1 and c2c3
// of token n-tile 2q, then of 2q + 1, for the transposed tile U^T (rows = columns of V).
KIMI_MMA_HD RowCol u_trans(int lane, int q, int warp) {
  return {16 * q + (lane >> 4) * 8 + (lane & 7), 16 * warp + ((lane >> 3) & 1) * 8};
}

// W or Gq [tokens][k], no .trans: matrices (tokens 8 nt..8 nt + 7) x (k 32 kk + 8 i), i = 0..3:
// the B fragments (b0b1, b2b3) of n-tile nt (tokens) for k-steps 2 kk, then 2 kk + 1.
KIMI_MMA_HD RowCol rows_nt(int lane, int nt, int kk) {
  return {8 * nt + (lane & 7), 32 * kk + (lane >> 3) * 8};
}

// Kd [tokens][k], .trans: matrices (tokens 16 ks | +8) x (k 16 jp | +8) in the order (lo, lo),
// (hi, lo), (lo, hi), (hi, hi): the B fragments of token k-step ks for the state n-tiles 2 jp,
// then 2 jp + 1.
KIMI_MMA_HD RowCol kd_trans(int lane, int ks, int jp) {
  return {16 * ks + ((lane >> 3) & 1) * 8 + (lane & 7), 16 * jp + (lane >> 4) * 8};
}

// Register e (0..3) of a lane's C fragment of a 16 x 8 tile: row lane / 4 (+8 for e >= 2),
// column 2 (lane % 4) (+1 for odd e). Two adjacent n-tiles (c0c1, c2c3 of the first, then of the
// second, packed to bf16 pairs) are the A fragment of one 16-wide k-step.
KIMI_MMA_HD RowCol c_elem(int lane, int e) {
  return {lane / 4 + (e >> 1) * 8, 2 * (lane % 4) + (e & 1)};
}

// The B fragment of A_qk^T (k = key token s, n = query token t) read from A_qk [t][s] fp32 rows:
// register r (0: s lo, 1: s + 8), half hf: A_qk[8 nt + lane / 4][16 ks + 2 (lane % 4) + 8 r + hf].
KIMI_MMA_HD RowCol aqk_b(int lane, int nt, int ks, int r) {
  return {8 * nt + lane / 4, 16 * ks + 2 * (lane % 4) + 8 * r};
}

// The B fragment of A_qk itself (k = query token s, n = key token t; the backward's B1 walk,
// dV'^T = dO^T A_qk) read from A_qk [s][t] fp32 rows: register r (0: s lo, 1: s + 8), half hf:
// A_qk[16 ks + 2 (lane % 4) + 8 r + hf][8 nt + lane / 4], i.e. the element at this (row, col)
// and the one a row below. With a row stride of 4 mod 32 floats the 32 lanes' loads fall in
// distinct banks.
KIMI_MMA_HD RowCol aqk_b_rows(int lane, int nt, int ks, int r) {
  return {16 * ks + 2 * (lane % 4) + 8 * r, 8 * nt + lane / 4};
}

// A warp's staging tile [rows][16 columns] (bf16, row stride ldo) for a transposed result X^T
// held as C fragments (16 warp columns x 8 rows per n-tile): register e of n-tile nt lands at
// row 8 nt + c_elem.col, column c_elem.row. Used for O, and in the backward's store mode
// (delta_rule_chunk_state_mma.cu) for the state h_c (rows k) and V' (rows = tokens).
KIMI_MMA_HD RowCol stage_at(int lane, int nt, int e) {
  const RowCol x = c_elem(lane, e);
  return {8 * nt + x.col, x.row};
}

// The staging tile leaves as 16-byte pieces: piece i is row i / 2, columns 8 (i % 2) .. +7.
KIMI_MMA_HD RowCol stage_piece(int i) { return {i / 2, 8 * (i % 2)}; }

}  // namespace kimi::cuda::detail::chunk::mma_tiles
