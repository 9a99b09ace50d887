// The index arithmetic of the tensor-core chunk state kernel (core/cuda/delta_rule/
// delta_rule_chunk_state_mma.cu) run on the host: its shared-memory tiles, ldmatrix addresses
// (state_mma_tiles.h), fragment reuse (C fragments as A fragments) and output staging, with
// ldmatrix and mma.sync m16n8k16 emulated as the PTX ISA defines their fragments, against the
// chunk recurrence in double precision on random operands. Odd shapes: T not a multiple of 64,
// K != V, V tiles past V (idle warps), 1..8 warps per block. bf16 operand rounding gives
// ~1e-3 relative error; an index slip gives O(1). The kernel's store mode (the chunk backward's
// F2 stage: h_c, the state before each chunk, and V' written through the warp's staging tile)
// is checked on the same run against the recurrence's h_c and V'.
#include "core/cuda/delta_rule/state_mma_tiles.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "tests/mma_emulation.h"

namespace {

namespace mt = kimi::cuda::detail::chunk::mma_tiles;
constexpr int kC = 64;

using kimi::test::mma_emu::bf16_round;
using kimi::test::mma_emu::ldsm4;
using kimi::test::mma_emu::mma;

struct Problem {
  int T, H, K, V, NC;
  std::vector<float> W, Kd, Gq, U, A, Eg, h0;  // [T,H,K] / [T,H,V] / [H][NC][kC][kC] / ...
};

Problem make_problem(int T, int H, int K, int V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f), d(0.5f, 1.f);
  Problem p{T, H, K, V, (T + kC - 1) / kC, {}, {}, {}, {}, {}, {}, {}};
  auto fill = [&](std::vector<float>& x, size_t n, float sc) {
    x.resize(n);
    for (float& y : x) y = bf16_round(sc * u(rng));
  };
  fill(p.W, size_t(T) * H * K, 0.1f);
  fill(p.Kd, size_t(T) * H * K, 0.1f);
  fill(p.Gq, size_t(T) * H * K, 0.3f);
  fill(p.U, size_t(T) * H * V, 1.f);
  fill(p.h0, size_t(H) * K * V, 1.f);
  p.A.assign(size_t(H) * p.NC * kC * kC, 0.f);
  for (int h = 0; h < H; ++h)
    for (int c = 0; c < p.NC; ++c)
      for (int i = 0; i < kC; ++i)
        for (int j = 0; j < kC; ++j) {
          float& a = p.A[((size_t(h) * p.NC + c) * kC + i) * kC + j];
          // Rows past the sequence are never written by the intra kernel: poison them.
          if (c * kC + i >= T)
            a = std::numeric_limits<float>::quiet_NaN();
          else if (j <= i)
            a = 0.1f * u(rng);
        }
  p.Eg.resize(size_t(H) * p.NC * K);
  for (float& y : p.Eg) y = d(rng);
  return p;
}

// The chunk recurrence in double: V' = U - W S, O = Gq S + A V', S <- diag(eg) S + Kd^T V';
// hs [H][NC][K][V] = S before chunk c, vp [T,H,V] = V'.
void reference(const Problem& p, std::vector<double>& o, std::vector<double>& ht,
               std::vector<double>& hs, std::vector<double>& vp) {
  o.assign(size_t(p.T) * p.H * p.V, 0);
  ht.assign(size_t(p.H) * p.K * p.V, 0);
  hs.assign(size_t(p.H) * p.NC * p.K * p.V, 0);
  vp.assign(size_t(p.T) * p.H * p.V, 0);
  for (int h = 0; h < p.H; ++h) {
    std::vector<double> S(p.h0.begin() + size_t(h) * p.K * p.V,
                          p.h0.begin() + size_t(h + 1) * p.K * p.V);
    for (int c = 0; c < p.NC; ++c) {
      const int t0 = c * kC, L = std::min(kC, p.T - t0);
      std::copy(S.begin(), S.end(), hs.begin() + (size_t(h) * p.NC + c) * p.K * p.V);
      std::vector<double> Vp(size_t(L) * p.V);
      for (int i = 0; i < L; ++i)
        for (int v = 0; v < p.V; ++v) {
          double x = p.U[(size_t(t0 + i) * p.H + h) * p.V + v];
          for (int k = 0; k < p.K; ++k)
            x -= p.W[(size_t(t0 + i) * p.H + h) * p.K + k] * S[k * p.V + v];
          Vp[i * p.V + v] = x;
          vp[(size_t(t0 + i) * p.H + h) * p.V + v] = x;
        }
      for (int i = 0; i < L; ++i)
        for (int v = 0; v < p.V; ++v) {
          double x = 0;
          for (int k = 0; k < p.K; ++k)
            x += p.Gq[(size_t(t0 + i) * p.H + h) * p.K + k] * S[k * p.V + v];
          for (int j = 0; j <= i; ++j)
            x += p.A[((size_t(h) * p.NC + c) * kC + i) * kC + j] * Vp[j * p.V + v];
          o[(size_t(t0 + i) * p.H + h) * p.V + v] = x;
        }
      for (int k = 0; k < p.K; ++k)
        for (int v = 0; v < p.V; ++v) {
          double x = p.Eg[(size_t(h) * p.NC + c) * p.K + k] * S[k * p.V + v];
          for (int i = 0; i < L; ++i)
            x += p.Kd[(size_t(t0 + i) * p.H + h) * p.K + k] * Vp[i * p.V + v];
          S[k * p.V + v] = x;
        }
    }
    for (size_t e = 0; e < S.size(); ++e) ht[size_t(h) * p.K * p.V + e] = S[e];
  }
}

// The kernel, block by block and warp by warp, as written in delta_rule_chunk_state_mma.cu
// (one stage of shared memory suffices on the host: the pipelining does not change the values).
// Store mode's outputs hs, vp come from the same walk (the kernel skips O there; the values of
// S and V' do not depend on it).
void emulate(const Problem& p, int nw, std::vector<float>& o, std::vector<float>& ht,
             std::vector<float>& hs, std::vector<float>& vp) {
  const int kD = std::max(p.K, p.V) <= 64 ? 64 : 128, BV = 16 * nw, kKT = kD / 8;
  const int ldk = kD + 8, ldu = BV + 8, lda = kC + 8, ldo = 24;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  o.assign(size_t(p.T) * p.H * p.V, nan);
  ht.assign(size_t(p.H) * p.K * p.V, nan);
  hs.assign(size_t(p.H) * p.NC * p.K * p.V, nan);
  vp.assign(size_t(p.T) * p.H * p.V, nan);
  std::vector<float> sW(kC * ldk), sKd(kC * ldk), sGq(kC * ldk), sU(kC * ldu), sA(kC * lda),
      sEg(kD), sO(std::max(kC, kD) * ldo);
  // write_stage: the staging tile's 16-byte pieces, rows < nrows, columns < ncols, to dst(row).
  auto write_stage = [&](int rows, int nrows, int ncols, auto dst) {
    for (int i = 0; i < 2 * rows; ++i) {
      const mt::RowCol x = mt::stage_piece(i);
      if (x.row < nrows && x.col < ncols)
        for (int e = 0; e < 8; ++e) *(dst(x.row) + x.col + e) = sO[x.row * ldo + x.col + e];
    }
  };
  for (int bh = 0; bh < p.H; ++bh)
    for (int v0 = 0; v0 < p.V; v0 += BV) {
      std::vector<float> s(size_t(nw) * 32 * kKT * 4);  // s[w][lane][j][e]
      auto S = [&](int w, int l, int j, int e) -> float& {
        return s[((size_t(w) * 32 + l) * kKT + j) * 4 + e];
      };
      for (int w = 0; w < nw; ++w)
        for (int l = 0; l < 32; ++l)
          for (int j = 0; j < kKT; ++j)
            for (int e = 0; e < 4; ++e) {
              const int v = v0 + 16 * w + mt::c_elem(l, e).row, k = 8 * j + mt::c_elem(l, e).col;
              S(w, l, j, e) = (v < p.V && k < p.K) ? p.h0[(size_t(bh) * p.K + k) * p.V + v] : 0.f;
            }
      for (int c = 0; c < p.NC; ++c) {
        const int t0 = c * kC, L = std::min(kC, p.T - t0);
        // load(): 16-byte vectors of 8 bf16 (4 fp32), zero past the sequence, K and V.
        for (int e = 0; e < kC * (kD / 8); ++e) {
          const int i = e / (kD / 8), col = (e % (kD / 8)) * 8;
          const bool ok = i < L && col < p.K;
          for (int x = 0; x < 8; ++x) {
            const size_t g = (size_t(t0 + i) * p.H + bh) * p.K + col + x;
            sW[i * ldk + col + x] = ok ? p.W[g] : 0.f;
            sKd[i * ldk + col + x] = ok ? p.Kd[g] : 0.f;
            sGq[i * ldk + col + x] = ok ? p.Gq[g] : 0.f;
          }
        }
        for (int e = 0; e < kC * (BV / 8); ++e) {
          const int i = e / (BV / 8), col = (e % (BV / 8)) * 8;
          const bool ok = i < L && v0 + col < p.V;
          for (int x = 0; x < 8; ++x)
            sU[i * ldu + col + x] =
                ok ? p.U[(size_t(t0 + i) * p.H + bh) * p.V + v0 + col + x] : 0.f;
        }
        for (int e = 0; e < kC * kC / 4; ++e) {
          const int i = e / (kC / 4), col = (e % (kC / 4)) * 4;
          for (int x = 0; x < 4; ++x)
            sA[i * lda + col + x] =
                i < L ? p.A[((size_t(bh) * p.NC + c) * kC + i) * kC + col + x] : 0.f;
        }
        for (int e = 0; e < kD / 4; ++e)
          for (int x = 0; x < 4; ++x)
            sEg[4 * e + x] = 4 * e < p.K ? p.Eg[(size_t(bh) * p.NC + c) * p.K + 4 * e + x] : 0.f;

        for (int w = 0; w < nw; ++w) {
          const int vw = v0 + 16 * w;
          if (vw >= p.V) continue;  // idle warp
          static float sa[32][8][4][2], vt[32][8][4], va[32][4][4][2], ot[32][8][4];
          static float r[32][4][2], bfr[32][2][2];
          mt::RowCol addr[32];
          // Store mode: h_c = S through the staging tile (rows k).
          std::fill(sO.begin(), sO.end(), nan);
          for (int l = 0; l < 32; ++l)
            for (int j = 0; j < kKT; ++j)
              for (int e = 0; e < 4; ++e) {
                const mt::RowCol x = mt::stage_at(l, j, e);
                sO[x.row * ldo + x.col] = bf16_round(S(w, l, j, e));
              }
          write_stage(kD, p.K, p.V - vw, [&](int k) {
            return hs.data() + ((size_t(bh) * p.NC + c) * p.K + k) * p.V + vw;
          });
          for (int l = 0; l < 32; ++l)
            for (int ks = 0; ks < kD / 16; ++ks)
              for (int q = 0; q < 4; ++q)
                for (int hf = 0; hf < 2; ++hf)
                  sa[l][ks][q][hf] = bf16_round(S(w, l, 2 * ks + q / 2, (q % 2) * 2 + hf));
          for (int q = 0; q < kC / 16; ++q) {
            for (int l = 0; l < 32; ++l) addr[l] = mt::u_trans(l, q, w);
            ldsm4(sU.data(), ldu, addr, true, r);
            for (int l = 0; l < 32; ++l)
              for (int hf = 0; hf < 2; ++hf) {
                vt[l][2 * q][hf] = -r[l][0][hf];
                vt[l][2 * q][2 + hf] = -r[l][1][hf];
                vt[l][2 * q + 1][hf] = -r[l][2][hf];
                vt[l][2 * q + 1][2 + hf] = -r[l][3][hf];
              }
          }
          // B fragments from an ldmatrix result: registers (i0, i0 + 1).
          auto b_of = [&](int i0) {
            for (int l = 0; l < 32; ++l)
              for (int hf = 0; hf < 2; ++hf) {
                bfr[l][0][hf] = r[l][i0][hf];
                bfr[l][1][hf] = r[l][i0 + 1][hf];
              }
          };
          auto mma_into = [&](float(*acc)[8][4], int tile, float(*a)[4][2], int a_stride, int ai) {
            float c4[32][4], a4[32][4][2];
            for (int l = 0; l < 32; ++l) {
              for (int e = 0; e < 4; ++e) c4[l][e] = acc[l][tile][e];
              std::memcpy(a4[l], a + l * a_stride + ai, sizeof a4[l]);
            }
            mma(c4, a4, bfr);
            for (int l = 0; l < 32; ++l)
              for (int e = 0; e < 4; ++e) acc[l][tile][e] = c4[l][e];
          };
          // add_state_times_rows: acc += S^T X^T, X = rows [tokens][k] of a tile.
          auto add_state_times_rows = [&](float(*acc)[8][4], const std::vector<float>& x) {
            for (int kk = 0; kk < kD / 32; ++kk)
              for (int nt = 0; nt < kC / 8; ++nt) {
                for (int l = 0; l < 32; ++l) addr[l] = mt::rows_nt(l, nt, kk);
                ldsm4(x.data(), ldk, addr, false, r);
                b_of(0);
                mma_into(acc, nt, &sa[0][0], 8, 2 * kk);
                b_of(2);
                mma_into(acc, nt, &sa[0][0], 8, 2 * kk + 1);
              }
          };
          add_state_times_rows(vt, sW);
          for (int l = 0; l < 32; ++l)
            for (int ks = 0; ks < kC / 16; ++ks)
              for (int q = 0; q < 4; ++q)
                for (int hf = 0; hf < 2; ++hf)
                  va[l][ks][q][hf] = bf16_round(-vt[l][2 * ks + q / 2][(q % 2) * 2 + hf]);
          // Store mode: V' through the staging tile (rows = tokens).
          std::fill(sO.begin(), sO.end(), nan);
          for (int l = 0; l < 32; ++l)
            for (int nt = 0; nt < kC / 8; ++nt)
              for (int e = 0; e < 4; ++e) {
                const mt::RowCol x = mt::stage_at(l, nt, e);
                sO[x.row * ldo + x.col] = bf16_round(-vt[l][nt][e]);
              }
          write_stage(kC, L, p.V - vw,
                      [&](int t) { return vp.data() + (size_t(t0 + t) * p.H + bh) * p.V + vw; });
          std::memset(ot, 0, sizeof ot);
          add_state_times_rows(ot, sGq);
          for (int nt = 0; nt < kC / 8; ++nt)
            for (int ks = 0; ks <= nt / 2; ++ks) {
              for (int l = 0; l < 32; ++l) {
                const mt::RowCol a = mt::aqk_b(l, nt, ks, 0);
                for (int hf = 0; hf < 2; ++hf) {
                  bfr[l][0][hf] = bf16_round(sA[a.row * lda + a.col + hf]);
                  bfr[l][1][hf] = bf16_round(sA[a.row * lda + a.col + 8 + hf]);
                }
              }
              mma_into(ot, nt, &va[0][0], 4, ks);
            }
          std::fill(sO.begin(), sO.end(), nan);
          for (int l = 0; l < 32; ++l)
            for (int nt = 0; nt < kC / 8; ++nt)
              for (int e = 0; e < 4; ++e) {
                const mt::RowCol x = mt::stage_at(l, nt, e);
                sO[x.row * ldo + x.col] = bf16_round(ot[l][nt][e]);
              }
          write_stage(kC, L, p.V - vw,
                      [&](int t) { return o.data() + (size_t(t0 + t) * p.H + bh) * p.V + vw; });
          for (int l = 0; l < 32; ++l)
            for (int j = 0; j < kKT; ++j) {
              const int k = 8 * j + mt::c_elem(l, 0).col;
              S(w, l, j, 0) *= sEg[k];
              S(w, l, j, 1) *= sEg[k + 1];
              S(w, l, j, 2) *= sEg[k];
              S(w, l, j, 3) *= sEg[k + 1];
            }
          static float sacc[32][8][4];  // two state n-tiles at a time (2 jp, 2 jp + 1)
          for (int ks = 0; ks < kC / 16; ++ks)
            for (int jp = 0; jp < kD / 16; ++jp) {
              for (int l = 0; l < 32; ++l) addr[l] = mt::kd_trans(l, ks, jp);
              ldsm4(sKd.data(), ldk, addr, true, r);
              for (int l = 0; l < 32; ++l)
                for (int e = 0; e < 4; ++e) {
                  sacc[l][0][e] = S(w, l, 2 * jp, e);
                  sacc[l][1][e] = S(w, l, 2 * jp + 1, e);
                }
              b_of(0);
              mma_into(sacc, 0, &va[0][0], 4, ks);
              b_of(2);
              mma_into(sacc, 1, &va[0][0], 4, ks);
              for (int l = 0; l < 32; ++l)
                for (int e = 0; e < 4; ++e) {
                  S(w, l, 2 * jp, e) = sacc[l][0][e];
                  S(w, l, 2 * jp + 1, e) = sacc[l][1][e];
                }
            }
        }
      }
      for (int w = 0; w < nw; ++w)
        for (int l = 0; l < 32; ++l)
          for (int j = 0; j < kKT; ++j)
            for (int e = 0; e < 4; ++e) {
              const int v = v0 + 16 * w + mt::c_elem(l, e).row, k = 8 * j + mt::c_elem(l, e).col;
              if (v < p.V && k < p.K) ht[(size_t(bh) * p.K + k) * p.V + v] = S(w, l, j, e);
            }
    }
}

double rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(got[i]) - ref[i];
    num += d * d;  // NaN (an element never written) propagates and fails the check
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

struct Shape {
  int T, H, K, V, nw;
};

class StateMmaTiles : public ::testing::TestWithParam<Shape> {};

TEST_P(StateMmaTiles, EmulatedKernelMatchesRecurrence) {
  const Shape sh = GetParam();
  const Problem p = make_problem(sh.T, sh.H, sh.K, sh.V, 17u * sh.T + sh.K + 3u * sh.V + sh.nw);
  std::vector<double> o_ref, ht_ref, hs_ref, vp_ref;
  reference(p, o_ref, ht_ref, hs_ref, vp_ref);
  std::vector<float> o, ht, hs, vp;
  emulate(p, sh.nw, o, ht, hs, vp);
  EXPECT_LT(rel_err(o, o_ref), 1e-2);
  EXPECT_LT(rel_err(ht, ht_ref), 1e-2);
  EXPECT_LT(rel_err(hs, hs_ref), 1e-2);  // store mode (backward F2): states before each chunk
  EXPECT_LT(rel_err(vp, vp_ref), 1e-2);  // and V'
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, StateMmaTiles,
    ::testing::Values(Shape{130, 2, 48, 40, 4},  // kD 64, partial warp, idle warp
                      Shape{77, 1, 128, 96, 4},  // second V tile half idle
                      Shape{64, 1, 64, 128, 8},  // kD 128, K < kD, one chunk
                      Shape{150, 1, 96, 72, 2},  // V tail of 8 columns
                      Shape{100, 1, 128, 128, 1}, Shape{40, 1, 32, 64, 2}));  // one short chunk

}  // namespace
