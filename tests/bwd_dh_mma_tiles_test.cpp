// The chunk backward's B1 walk on tensor cores (core/cuda/delta_rule/
// delta_rule_chunk_bwd_dh_mma.cu) run on the host: its shared tiles, the ldmatrix addresses and
// fragment reuse of state_mma_tiles.h (dO^T as A fragments by ldmatrix.trans, A_qk as a
// non-transposed B from fp32 rows, Gq and W by ldmatrix.trans, dS^T and dV'^T from their C
// fragments) and its staging of dh_c and dV', with ldmatrix and mma.sync emulated
// (tests/mma_emulation.h), against the walk in double precision on random operands:
//   dh_c = dS;  dV' = A_qk^T dO + Kd dS;  dS <- diag(e^G_last) dS + Gq^T dO - W^T dV'.
// Odd shapes: T not a multiple of 64 (rows of A_qk past T are NaN, as the intra kernel leaves
// them), K != V, V tiles past V (idle warps, a warp half past V), 1..8 warps. bf16 operand
// rounding gives ~2e-3; an index slip gives O(1) or NaN.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/cuda/delta_rule/state_mma_tiles.h"
#include "tests/mma_emulation.h"

namespace {

namespace mt = kimi::cuda::detail::chunk::mma_tiles;
using kimi::test::mma_emu::bf16_round;
using kimi::test::mma_emu::ldsm4;
using kimi::test::mma_emu::mma;
constexpr int kC = 64;

struct Problem {
  int T, H, K, V, NC;
  std::vector<float> W, Kd, Gq, dO, A, Eg, dht;  // [T,H,K] / [T,H,V] / [H][NC][kC][kC] / ...
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
  fill(p.dO, size_t(T) * H * V, 1.f);
  p.dht.resize(size_t(H) * K * V);
  for (float& y : p.dht) y = u(rng);  // fp32, as the kernel reads it
  p.A.assign(size_t(H) * p.NC * kC * kC, 0.f);
  for (int h = 0; h < H; ++h)
    for (int c = 0; c < p.NC; ++c)
      for (int i = 0; i < kC; ++i)
        for (int j = 0; j < kC; ++j) {
          float& a = p.A[((size_t(h) * p.NC + c) * kC + i) * kC + j];
          if (c * kC + i >= T)
            a = std::numeric_limits<float>::quiet_NaN();
          else if (j <= i)
            a = 0.1f * u(rng);
        }
  p.Eg.resize(size_t(H) * p.NC * K);
  for (float& y : p.Eg) y = d(rng);
  return p;
}

// The walk in double: dh [H][NC][K][V], dvp [T,H,V], dh0 [H][K][V].
void reference(const Problem& p, std::vector<double>& dh, std::vector<double>& dvp,
               std::vector<double>& dh0) {
  dh.assign(size_t(p.H) * p.NC * p.K * p.V, 0);
  dvp.assign(size_t(p.T) * p.H * p.V, 0);
  dh0.assign(size_t(p.H) * p.K * p.V, 0);
  auto row = [&](const std::vector<float>& x, int t, int h, int w) {
    return x.data() + (size_t(t) * p.H + h) * w;
  };
  for (int h = 0; h < p.H; ++h) {
    std::vector<double> S(p.dht.begin() + size_t(h) * p.K * p.V,
                          p.dht.begin() + size_t(h + 1) * p.K * p.V);
    for (int c = p.NC - 1; c >= 0; --c) {
      const int t0 = c * kC, L = std::min(kC, p.T - t0);
      const float* A = p.A.data() + (size_t(h) * p.NC + c) * kC * kC;
      std::copy(S.begin(), S.end(), dh.begin() + (size_t(h) * p.NC + c) * p.K * p.V);
      std::vector<double> dV(size_t(L) * p.V);
      for (int t = 0; t < L; ++t)
        for (int v = 0; v < p.V; ++v) {
          double x = 0;
          for (int s = t; s < L; ++s) x += double(A[s * kC + t]) * row(p.dO, t0 + s, h, p.V)[v];
          for (int k = 0; k < p.K; ++k) x += double(row(p.Kd, t0 + t, h, p.K)[k]) * S[k * p.V + v];
          dV[t * p.V + v] = x;
          dvp[(size_t(t0 + t) * p.H + h) * p.V + v] = x;
        }
      for (int k = 0; k < p.K; ++k)
        for (int v = 0; v < p.V; ++v) {
          double x = p.Eg[(size_t(h) * p.NC + c) * p.K + k] * S[k * p.V + v];
          for (int t = 0; t < L; ++t)
            x += double(row(p.Gq, t0 + t, h, p.K)[k]) * row(p.dO, t0 + t, h, p.V)[v] -
                 double(row(p.W, t0 + t, h, p.K)[k]) * dV[t * p.V + v];
          S[k * p.V + v] = x;
        }
    }
    std::copy(S.begin(), S.end(), dh0.begin() + size_t(h) * p.K * p.V);
  }
}

// The kernel, block by block and warp by warp, as written (one shared stage: the pipelining
// does not change the values).
void emulate(const Problem& p, int nw, std::vector<float>& dh, std::vector<float>& dvp,
             std::vector<float>& dh0) {
  const int kD = std::max(p.K, p.V) <= 64 ? 64 : 128, BV = 16 * nw, kKT = kD / 8;
  const int ldk = kD + 8, ldu = BV + 8, lda = kC + 4, ldo = 24;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  dh.assign(size_t(p.H) * p.NC * p.K * p.V, nan);
  dvp.assign(size_t(p.T) * p.H * p.V, nan);
  dh0.assign(size_t(p.H) * p.K * p.V, nan);
  std::vector<float> sW(kC * ldk), sKd(kC * ldk), sGq(kC * ldk), sDo(kC * ldu), sA(kC * lda),
      sEg(kD), sO(std::max(kC, kD) * ldo);
  auto write_stage = [&](int rows, int nrows, int ncols, auto dst) {
    for (int i = 0; i < 2 * rows; ++i) {
      const mt::RowCol x = mt::stage_piece(i);
      if (x.row < nrows && x.col < ncols)
        for (int e = 0; e < 8; ++e) *(dst(x.row) + x.col + e) = sO[x.row * ldo + x.col + e];
    }
  };
  static float r[32][4][2], bfr[32][2][2], sa[32][8][4][2], oa[32][4][4][2], va[32][4][4][2];
  static float dv[32][8][4], acc[32][16][4];
  mt::RowCol addr[32];
  // acc[l][tile] += a[l][ai] * bfr (one mma.sync).
  auto mma_into = [&](float(*c)[16][4], int tile, const float* a, int a_stride, int ai) {
    float c4[32][4], a4[32][4][2];
    for (int l = 0; l < 32; ++l) {
      for (int e = 0; e < 4; ++e) c4[l][e] = c[l][tile][e];
      std::memcpy(a4[l], a + size_t(l) * a_stride + size_t(ai) * 8, sizeof a4[l]);
    }
    mma(c4, a4, bfr);
    for (int l = 0; l < 32; ++l)
      for (int e = 0; e < 4; ++e) c[l][tile][e] = c4[l][e];
  };
  auto b_of = [&](int i0) {
    for (int l = 0; l < 32; ++l)
      for (int hf = 0; hf < 2; ++hf) {
        bfr[l][0][hf] = r[l][i0][hf];
        bfr[l][1][hf] = r[l][i0 + 1][hf];
      }
  };
  for (int bh = 0; bh < p.H; ++bh)
    for (int v0 = 0; v0 < p.V; v0 += BV) {
      std::vector<float> s(size_t(nw) * 32 * kKT * 4);  // dS^T: s[w][lane][j][e]
      auto S = [&](int w, int l, int j, int e) -> float& {
        return s[((size_t(w) * 32 + l) * kKT + j) * 4 + e];
      };
      for (int w = 0; w < nw; ++w)
        for (int l = 0; l < 32; ++l)
          for (int j = 0; j < kKT; ++j)
            for (int e = 0; e < 4; ++e) {
              const int v = v0 + 16 * w + mt::c_elem(l, e).row, k = 8 * j + mt::c_elem(l, e).col;
              S(w, l, j, e) = (v < p.V && k < p.K) ? p.dht[(size_t(bh) * p.K + k) * p.V + v] : 0.f;
            }
      for (int c = p.NC - 1; c >= 0; --c) {
        const int t0 = c * kC, L = std::min(kC, p.T - t0);
        for (int e = 0; e < kC * (kD / 8); ++e) {
          const int i = e / (kD / 8), col = (e % (kD / 8)) * 8;
          const bool ok = i < L && col < p.K;
          for (int x = 0; x < 8; ++x) {
            const size_t g = (size_t(t0 + i) * p.H + bh) * p.K + col + x;
            sGq[i * ldk + col + x] = ok ? p.Gq[g] : 0.f;
            sKd[i * ldk + col + x] = ok ? p.Kd[g] : 0.f;
            sW[i * ldk + col + x] = ok ? p.W[g] : 0.f;
          }
        }
        for (int e = 0; e < kC * (BV / 8); ++e) {
          const int i = e / (BV / 8), col = (e % (BV / 8)) * 8;
          const bool ok = i < L && v0 + col < p.V;
          for (int x = 0; x < 8; ++x)
            sDo[i * ldu + col + x] =
                ok ? p.dO[(size_t(t0 + i) * p.H + bh) * p.V + v0 + col + x] : 0.f;
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
          if (vw >= p.V) continue;
          // dh_c = dS through the staging tile (rows k).
          std::fill(sO.begin(), sO.end(), nan);
          for (int l = 0; l < 32; ++l)
            for (int j = 0; j < kKT; ++j)
              for (int e = 0; e < 4; ++e) {
                const mt::RowCol x = mt::stage_at(l, j, e);
                sO[x.row * ldo + x.col] = bf16_round(S(w, l, j, e));
              }
          write_stage(kD, p.K, p.V - vw, [&](int k) {
            return dh.data() + ((size_t(bh) * p.NC + c) * p.K + k) * p.V + vw;
          });
          // c_to_a(ds, sa, 1): A fragment q of k-step ks = n-tile 2 ks + q / 2, c (q % 2) * 2.
          for (int l = 0; l < 32; ++l)
            for (int ks = 0; ks < kD / 16; ++ks)
              for (int q = 0; q < 4; ++q)
                for (int hf = 0; hf < 2; ++hf)
                  sa[l][ks][q][hf] = bf16_round(S(w, l, 2 * ks + q / 2, (q % 2) * 2 + hf));
          std::memset(dv, 0, sizeof dv);
          std::memset(acc, 0, sizeof acc);
          // add_state_times_rows(dv, sa, Kd): B = rows of Kd, n-tile nt, k-steps 2 kk, 2 kk + 1.
          for (int kk = 0; kk < kD / 32; ++kk)
            for (int nt = 0; nt < kC / 8; ++nt) {
              for (int l = 0; l < 32; ++l) addr[l] = mt::rows_nt(l, nt, kk);
              ldsm4(sKd.data(), ldk, addr, false, r);
              b_of(0);
              mma_into(acc, nt, &sa[0][0][0][0], 8 * 8, 2 * kk);
              b_of(2);
              mma_into(acc, nt, &sa[0][0][0][0], 8 * 8, 2 * kk + 1);
            }
          for (int q = 0; q < kC / 16; ++q) {
            for (int l = 0; l < 32; ++l) addr[l] = mt::u_trans(l, q, w);
            ldsm4(sDo.data(), ldu, addr, true, r);
            for (int l = 0; l < 32; ++l) std::memcpy(oa[l][q], r[l], sizeof r[l]);
          }
          for (int nt = 0; nt < kC / 8; ++nt)
            for (int ks = nt / 2; ks < kC / 16; ++ks) {
              for (int l = 0; l < 32; ++l) {
                const mt::RowCol a = mt::aqk_b_rows(l, nt, ks, 0);
                for (int hf = 0; hf < 2; ++hf) {
                  bfr[l][0][hf] = bf16_round(sA[(a.row + hf) * lda + a.col]);
                  bfr[l][1][hf] = bf16_round(sA[(a.row + 8 + hf) * lda + a.col]);
                }
              }
              mma_into(acc, nt, &oa[0][0][0][0], 4 * 8, ks);
            }
          for (int l = 0; l < 32; ++l)
            for (int nt = 0; nt < kC / 8; ++nt)
              for (int e = 0; e < 4; ++e) dv[l][nt][e] = acc[l][nt][e];
          // dV' through the staging tile (rows = tokens).
          std::fill(sO.begin(), sO.end(), nan);
          for (int l = 0; l < 32; ++l)
            for (int nt = 0; nt < kC / 8; ++nt)
              for (int e = 0; e < 4; ++e) {
                const mt::RowCol x = mt::stage_at(l, nt, e);
                sO[x.row * ldo + x.col] = bf16_round(dv[l][nt][e]);
              }
          write_stage(kC, L, p.V - vw,
                      [&](int t) { return dvp.data() + (size_t(t0 + t) * p.H + bh) * p.V + vw; });
          for (int l = 0; l < 32; ++l)
            for (int ks = 0; ks < kC / 16; ++ks)
              for (int q = 0; q < 4; ++q)
                for (int hf = 0; hf < 2; ++hf)
                  va[l][ks][q][hf] = bf16_round(-dv[l][2 * ks + q / 2][(q % 2) * 2 + hf]);
          for (int l = 0; l < 32; ++l)
            for (int j = 0; j < kKT; ++j) {
              const int k = 8 * j + mt::c_elem(l, 0).col;
              S(w, l, j, 0) *= sEg[k];
              S(w, l, j, 1) *= sEg[k + 1];
              S(w, l, j, 2) *= sEg[k];
              S(w, l, j, 3) *= sEg[k + 1];
            }
          for (int l = 0; l < 32; ++l)
            for (int j = 0; j < kKT; ++j)
              for (int e = 0; e < 4; ++e) acc[l][j][e] = S(w, l, j, e);
          for (int ks = 0; ks < kC / 16; ++ks)
            for (int jp = 0; jp < kD / 16; ++jp) {
              for (int l = 0; l < 32; ++l) addr[l] = mt::kd_trans(l, ks, jp);
              ldsm4(sGq.data(), ldk, addr, true, r);
              b_of(0);
              mma_into(acc, 2 * jp, &oa[0][0][0][0], 4 * 8, ks);
              b_of(2);
              mma_into(acc, 2 * jp + 1, &oa[0][0][0][0], 4 * 8, ks);
              ldsm4(sW.data(), ldk, addr, true, r);
              b_of(0);
              mma_into(acc, 2 * jp, &va[0][0][0][0], 4 * 8, ks);
              b_of(2);
              mma_into(acc, 2 * jp + 1, &va[0][0][0][0], 4 * 8, ks);
            }
          for (int l = 0; l < 32; ++l)
            for (int j = 0; j < kKT; ++j)
              for (int e = 0; e < 4; ++e) S(w, l, j, e) = acc[l][j][e];
        }
      }
      for (int w = 0; w < nw; ++w)
        for (int l = 0; l < 32; ++l)
          for (int j = 0; j < kKT; ++j)
            for (int e = 0; e < 4; ++e) {
              const int v = v0 + 16 * w + mt::c_elem(l, e).row, k = 8 * j + mt::c_elem(l, e).col;
              if (v < p.V && k < p.K) dh0[(size_t(bh) * p.K + k) * p.V + v] = S(w, l, j, e);
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

class BwdDhMmaTiles : public ::testing::TestWithParam<Shape> {};

TEST_P(BwdDhMmaTiles, EmulatedKernelMatchesWalk) {
  const Shape sh = GetParam();
  const Problem p = make_problem(sh.T, sh.H, sh.K, sh.V, 31u * sh.T + sh.K + 5u * sh.V + sh.nw);
  std::vector<double> dh_ref, dvp_ref, dh0_ref;
  reference(p, dh_ref, dvp_ref, dh0_ref);
  std::vector<float> dh, dvp, dh0;
  emulate(p, sh.nw, dh, dvp, dh0);
  const double e_dh = rel_err(dh, dh_ref), e_dvp = rel_err(dvp, dvp_ref),
               e_dh0 = rel_err(dh0, dh0_ref);
  EXPECT_LT(e_dh, 1e-2);
  EXPECT_LT(e_dvp, 1e-2);
  EXPECT_LT(e_dh0, 1e-2);
  std::printf("T%d K%d V%d w%d: dh %.2e  dV' %.2e  dh0 %.2e\n", sh.T, sh.K, sh.V, sh.nw, e_dh,
              e_dvp, e_dh0);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, BwdDhMmaTiles,
    ::testing::Values(Shape{130, 2, 48, 40, 4},   // kD 64, partial warp, idle warp
                      Shape{100, 1, 96, 72, 4},   // V tail of 8, idle warp
                      Shape{257, 1, 64, 128, 8},  // kD 128, K < kD, last chunk of one token
                      Shape{150, 1, 128, 96, 2},  // tiles of 32 columns
                      Shape{77, 1, 128, 128, 1}, Shape{40, 1, 32, 64, 2}));  // one short chunk

}  // namespace
