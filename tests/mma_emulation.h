// ldmatrix .x4 and mma.sync m16n8k16 (bf16 in, fp32 accumulate) emulated on the host as the PTX
// ISA defines their fragments ("warp-level matrix fragments"), for the host checks of the
// tensor-core kernels' index arithmetic (tests/state_mma_tiles_test.cpp,
// tests/bwd_dh_mma_tiles_test.cpp, tests/intra_mma_tiles_test.cpp, tests/bwd_mma_tiles_test.cpp).
// Tiles are floats holding bf16 values; a lane's registers are float pairs ([0] = the low half =
// the lower index).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/cuda/delta_rule/state_mma_tiles.h"

namespace kimi::test::mma_emu {

namespace mt = kimi::cuda::detail::chunk::mma_tiles;

inline float bf16_round(float x) {  // round to nearest even, as cvt.rn.bf16 (inf stays inf)
  if (std::isnan(x)) return x;      // poisoned tiles (NaN rows) must stay NaN
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&x, &u, 4);
  return x;
}

// ldmatrix .x4 over a row-major tile of floats (stride ld); addr[l] = (row, col) given by lane l.
inline void ldsm4(const float* tile, int ld, const mt::RowCol* addr, bool trans,
                  float out[32][4][2]) {
  for (int l = 0; l < 32; ++l)
    for (int i = 0; i < 4; ++i)
      for (int hf = 0; hf < 2; ++hf) {
        if (!trans) {
          const mt::RowCol a = addr[8 * i + l / 4];
          out[l][i][hf] = tile[a.row * ld + a.col + 2 * (l % 4) + hf];
        } else {
          const mt::RowCol a = addr[8 * i + 2 * (l % 4) + hf];
          out[l][i][hf] = tile[a.row * ld + a.col + l / 4];
        }
      }
}

// mma.sync m16n8k16 row.col: c[l] += A B with A (16 x 16) from a[l][4][2] and B (16 x 8) from
// b[l][2][2], fragment layouts of the PTX ISA written out independently of state_mma_tiles.h.
inline void mma(float c[32][4], const float a[32][4][2], const float b[32][2][2]) {
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int hf = 0; hf < 2; ++hf) {
      A[g][2 * t + hf] = a[l][0][hf];
      A[g + 8][2 * t + hf] = a[l][1][hf];
      A[g][8 + 2 * t + hf] = a[l][2][hf];
      A[g + 8][8 + 2 * t + hf] = a[l][3][hf];
      B[2 * t + hf][g] = b[l][0][hf];
      B[8 + 2 * t + hf][g] = b[l][1][hf];
    }
  }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int e = 0; e < 4; ++e) {
      const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
      double acc = 0;
      for (int k = 0; k < 16; ++k) acc += double(A[row][k]) * B[k][col];
      c[l][e] += float(acc);
    }
  }
}

}  // namespace kimi::test::mma_emu
