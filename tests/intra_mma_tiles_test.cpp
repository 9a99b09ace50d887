// The tensor-core KDA intra kernel (core/cuda/delta_rule/delta_rule_chunk_intra_mma.cu) run on
// the host: its shared tiles (padded rows), the fragment elements each lane builds for the Gram
// products with the decays split at intra_tiles::gate_ref_row, the exact fp32 path of diagonal
// blocks whose gate span is too wide, the fp32 inverse, and W / U from ldmatrix.trans
// addresses and the warps' row-block units (intra_mma_tiles.h), with mma.sync m16n8k16 and
// ldmatrix emulated as the PTX ISA defines their fragments and bf16 rounding where the kernel
// rounds; against the double-precision reference (tests/chunk_intra_reference.h). Odd shapes:
// T not a multiple of 64, K != V both ways, K < the padded head size, strong decays (diagonal
// blocks on the exact path, off-diagonal factors underflowing). Every output starts as NaN, so
// a tile or unit that no warp writes fails. bf16 operands give ~2-4e-3; the deliberate slips
// (SlipsAreCaught) must each fail by more than 5e-2 (or give NaN / inf).
#include "core/cuda/delta_rule/intra_mma_tiles.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/chunk_intra_reference.h"
#include "tests/mma_emulation.h"

namespace {

namespace it = kimi::cuda::detail::chunk::intra_tiles;
namespace mt = kimi::cuda::detail::chunk::mma_tiles;
constexpr int kC = 64, kLdA = kC + 4, kWarps = 8;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

using kimi::test::mma_emu::bf16_round;
using kimi::test::mma_emu::mma;

void ldsm4_trans(const float* tile, int ld, const mt::RowCol* addr, float out[32][4][2]) {
  kimi::test::mma_emu::ldsm4(tile, ld, addr, true, out);
}

struct In {
  int B, T, H, K, V;
  float scale;
  std::vector<float> q, k, v, g, beta;  // bf16 values
};

In make_input(int B, int T, int H, int K, int V, double decay, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01;
  std::uniform_real_distribution<float> u01(0.f, 1.f);
  In in{B, T, H, K, V, 1.f / std::sqrt(float(K)), {}, {}, {}, {}, {}};
  const size_t rows = size_t(B) * T * H;
  in.q.resize(rows * K);
  in.k.resize(rows * K);
  in.g.resize(rows * K);
  in.v.resize(rows * V);
  in.beta.resize(rows);
  for (size_t r = 0; r < rows; ++r) {
    float s = 0;
    for (int d = 0; d < K; ++d) {
      in.q[r * K + d] = bf16_round(n01(rng));
      const float x = n01(rng);
      in.k[r * K + d] = x;
      s += x * x;
    }
    for (int d = 0; d < K; ++d) in.k[r * K + d] = bf16_round(in.k[r * K + d] / std::sqrt(s));
    for (int d = 0; d < K; ++d) in.g[r * K + d] = bf16_round(-float(decay) * u01(rng));
    for (int d = 0; d < V; ++d) in.v[r * V + d] = bf16_round(n01(rng));
    in.beta[r] = bf16_round(0.05f + 0.9f * u01(rng));
  }
  return in;
}

// Deliberate index slips, each in one of the kernel's index helpers as the emulation uses them.
enum class Slip {
  kNone,
  kARow,       // a_pair: the row halves of registers 1 and 3 swapped
  kBCol,       // b_pair: the k halves of the two B registers swapped
  kRhsTrans,   // rhs_trans: matrices 1 and 2 swapped (k and n halves crossed)
  kRefRow,     // gate_ref_row: the first row of block J below the diagonal (factors > 1)
  kNoExact,    // the diagonal blocks never take the exact path
  kWuBlocks,   // wu_row_block: row block 2 twice, 3 never
  kTinvBlock,  // W / U: Tinv's k-step taken from the wrong column block
};

struct Out {
  std::vector<float> W, U, Gq, Kd, Aqk, EgL;
};

Out emulate(const In& in, Slip slip) {
  const int B = in.B, T = in.T, H = in.H, K = in.K, V = in.V;
  const int kD = std::max(K, V) <= 64 ? 64 : 128, ldb = kD + 8, ldg = kD + 8;
  const int NC = (T + kC - 1) / kC;
  Out o;
  o.W.assign(size_t(B) * T * H * K, kNaN);
  o.Gq = o.Kd = o.W;
  o.U.assign(size_t(B) * T * H * V, kNaN);
  o.Aqk.assign(size_t(B) * H * NC * kC * kC, kNaN);
  o.EgL.assign(size_t(B) * H * NC * K, kNaN);
  auto tk = [&](int b, int t, int h) { return (int64_t(b) * T + t) * H + h; };
  std::vector<float> sK(kC * ldb), sQ(kC * ldb), sV(kC * ldb), sG(kC * ldg), sA(kC * kLdA),
      sT(kC * kLdA), beta(kC);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int c = 0; c < NC; ++c) {
        const int t0 = c * kC, L = std::min(kC, T - t0);
        const int64_t item = (int64_t(b) * H + h) * NC + c;
        std::fill(sK.begin(), sK.end(), 0.f);
        std::fill(sQ.begin(), sQ.end(), 0.f);
        std::fill(sV.begin(), sV.end(), 0.f);
        std::fill(sG.begin(), sG.end(), 0.f);
        std::fill(sA.begin(), sA.end(), kNaN);  // the Gram epilogue must write every lower entry
        for (int i = 0; i < kC; ++i) beta[i] = i < L ? in.beta[tk(b, t0 + i, h)] : 0.f;
        for (int i = 0; i < L; ++i) {
          const int64_t r = tk(b, t0 + i, h);
          for (int d = 0; d < K; ++d) {
            sK[i * ldb + d] = in.k[r * K + d];
            sQ[i * ldb + d] = in.q[r * K + d];
            sG[i * ldg + d] = in.g[r * K + d];
          }
          for (int d = 0; d < V; ++d) sV[i * ldb + d] = in.v[r * V + d];
        }
        for (int d = 0; d < kD; ++d) {  // cumsum_rows: fp32, row order
          float acc = 0.f;
          for (int i = 0; i < kC; ++i) sG[i * ldg + d] = acc += sG[i * ldg + d];
        }
        float* aqk = o.Aqk.data() + item * kC * kC;

        // Gram tiles, warp by warp.
        for (int warp = 0; warp < kWarps; ++warp)
          for (int u = warp; u < 10; u += kWarps) {
            const mt::RowCol tile = it::gram_tile(u);
            const int I = tile.row, J = tile.col;
            const int ref = (slip == Slip::kRefRow && I != J) ? 16 * J : it::gate_ref_row(I, J);
            float ck[2][32][4] = {}, cq[2][32][4] = {};
            bool exact = false;
            if (I == J) {
              float m = 0.f;
              for (int i = 16 * J; i < 16 * J + 16; ++i)
                for (int d = 0; d < kD; ++d)
                  m = std::max(m, std::fabs(sG[i * ldg + d] - sG[ref * ldg + d]));
              exact = !(m <= it::kMaxSplitExp) && slip != Slip::kNoExact;
            }
            if (exact) {
              for (int nt = 0; nt < 2; ++nt)
                for (int l = 0; l < 32; ++l)
                  for (int e = 0; e < 4; ++e) {
                    const mt::RowCol x = mt::c_elem(l, e);
                    const int i = 16 * J + x.row, j = 16 * J + 8 * nt + x.col;
                    float akk = 0.f, aq = 0.f;
                    if (j <= i)
                      for (int d = 0; d < kD; ++d) {
                        const float kj =
                            sK[j * ldb + d] * std::exp(sG[i * ldg + d] - sG[j * ldg + d]);
                        akk += sK[i * ldb + d] * kj;
                        aq += sQ[i * ldb + d] * kj;
                      }
                    ck[nt][l][e] = akk;
                    cq[nt][l][e] = aq;
                  }
            } else {
              for (int ks = 0; ks < kD / 16 && 16 * ks < K; ++ks) {
                const int c0 = 16 * ks;
                float ak[32][4][2], aq[32][4][2];
                for (int l = 0; l < 32; ++l)
                  for (int r = 0; r < 4; ++r) {
                    mt::RowCol a = it::a_pair(l, r);
                    if (slip == Slip::kARow && (r & 1)) a.row ^= 8;
                    const int i = 16 * I + a.row;
                    for (int hf = 0; hf < 2; ++hf) {
                      const int col = c0 + a.col + hf;
                      const float e = std::exp(sG[i * ldg + col] - sG[ref * ldg + col]);
                      ak[l][r][hf] = bf16_round(sK[i * ldb + col] * e);
                      aq[l][r][hf] = bf16_round(sQ[i * ldb + col] * e);
                    }
                  }
                for (int nt = 0; nt < 2; ++nt) {
                  float bk[32][2][2];
                  for (int l = 0; l < 32; ++l)
                    for (int r = 0; r < 2; ++r) {
                      mt::RowCol x = it::b_pair(l, r);
                      if (slip == Slip::kBCol) x.col ^= 8;
                      const int j = 16 * J + 8 * nt + x.row;
                      for (int hf = 0; hf < 2; ++hf) {
                        const int col = c0 + x.col + hf;
                        bk[l][r][hf] = bf16_round(
                            sK[j * ldb + col] * std::exp(sG[ref * ldg + col] - sG[j * ldg + col]));
                      }
                    }
                  mma(ck[nt], ak, bk);
                  mma(cq[nt], aq, bk);
                }
              }
            }
            for (int nt = 0; nt < 2; ++nt)
              for (int l = 0; l < 32; ++l)
                for (int e = 0; e < 4; ++e) {
                  const mt::RowCol x = mt::c_elem(l, e);
                  const int i = 16 * I + x.row, j = 16 * J + 8 * nt + x.col;
                  sA[i * kLdA + j] = j < i ? beta[i] * ck[nt][l][e] : 0.f;
                  aqk[i * kC + j] = j <= i ? in.scale * cq[nt][l][e] : 0.f;
                }
          }
        for (int i = 0; i < kC; ++i)
          for (int j = 0; j < kC; ++j)
            if (j / 16 > i / 16) aqk[i * kC + j] = 0.f;

        // Gq, Kd, exp(G_last); right-hand sides in place (bf16).
        const float* Gl = sG.data() + (kC - 1) * ldg;
        for (int i = 0; i < kC; ++i)
          for (int d = 0; d < kD; ++d) {
            const float gv = sG[i * ldg + d], e = std::exp(gv), kv = sK[i * ldb + d];
            if (i < L && d < K) {
              const int64_t r = tk(b, t0 + i, h) * K + d;
              o.Gq[r] = bf16_round(in.scale * sQ[i * ldb + d] * e);
              o.Kd[r] = bf16_round(kv * std::exp(Gl[d] - gv));
            }
            sK[i * ldb + d] = bf16_round(beta[i] * e * kv);
            sV[i * ldb + d] = bf16_round(beta[i] * sV[i * ldb + d]);
          }
        for (int d = 0; d < K; ++d) o.EgL[item * K + d] = std::exp(Gl[d]);

        // Tinv = (I + A)^-1 in fp32, reading only A's strictly lower entries; blocks above
        // the diagonal hold NaN (the kernel leaves other data there), so W / U must not read them.
        for (int i = 0; i < kC; ++i)
          for (int j = 0; j < kC; ++j) sT[i * kLdA + j] = j / 16 > i / 16 ? kNaN : 0.f;
        for (int j = 0; j < kC; ++j)
          for (int i = j; i < kC; ++i) {
            float x = i == j ? 1.f : 0.f;
            for (int m = j; m < i; ++m) x -= sA[i * kLdA + m] * sT[m * kLdA + j];
            sT[i * kLdA + j] = x;
          }

        // W = Tinv Rk, U = Tinv Rv by the warps' units.
        for (int warp = 0; warp < kWarps; ++warp)
          for (int n = 0;; ++n) {
            int grp = 0;
            int I = it::wu_row_block(kD, kWarps, warp, n, &grp);
            if (I < 0) break;
            if (slip == Slip::kWuBlocks && I == 3) I = 2;
            const bool is_u = grp >= kD / 64;
            const int col0 = (is_u ? grp - kD / 64 : grp) * 64, ncols = is_u ? V : K;
            if (col0 >= ncols) continue;
            const float* rhs = is_u ? sV.data() : sK.data();
            float acc[8][32][4] = {};
            for (int ks = 0; ks <= I; ++ks) {
              const int kcol = slip == Slip::kTinvBlock ? std::max(ks - 1, 0) : ks;
              float a[32][4][2];
              for (int l = 0; l < 32; ++l)
                for (int r = 0; r < 4; ++r) {
                  const mt::RowCol x = it::a_pair(l, r);
                  for (int hf = 0; hf < 2; ++hf)
                    a[l][r][hf] = bf16_round(sT[(16 * I + x.row) * kLdA + 16 * kcol + x.col + hf]);
                }
              for (int n16 = 0; n16 < 4; ++n16) {
                mt::RowCol addr[32];
                for (int l = 0; l < 32; ++l) {
                  addr[l] = it::rhs_trans(l, ks, n16);
                  if (slip == Slip::kRhsTrans) {
                    const int m = l / 8, sw = m == 1 ? 2 : m == 2 ? 1 : m;
                    addr[l] = it::rhs_trans(8 * sw + l % 8, ks, n16);
                  }
                }
                float r[32][4][2];
                ldsm4_trans(rhs + col0, ldb, addr, r);
                float b0[32][2][2], b1[32][2][2];
                for (int l = 0; l < 32; ++l)
                  for (int hf = 0; hf < 2; ++hf) {
                    b0[l][0][hf] = r[l][0][hf];
                    b0[l][1][hf] = r[l][1][hf];
                    b1[l][0][hf] = r[l][2][hf];
                    b1[l][1][hf] = r[l][3][hf];
                  }
                mma(acc[2 * n16], a, b0);
                mma(acc[2 * n16 + 1], a, b1);
              }
            }
            std::vector<float>& dst = is_u ? o.U : o.W;
            for (int nt = 0; nt < 8; ++nt)
              for (int l = 0; l < 32; ++l)
                for (int e = 0; e < 4; ++e) {
                  const mt::RowCol x = mt::c_elem(l, e);
                  const int i = 16 * I + x.row, j = col0 + 8 * nt + x.col;
                  if (i < L && j < ncols)
                    dst[tk(b, t0 + i, h) * (is_u ? V : K) + j] = bf16_round(acc[nt][l][e]);
                }
          }
      }
  return o;
}

struct Shape {
  int B, T, H, K, V;
  double decay;
};

struct Errors {
  double W, U, Gq, Kd, Aqk, EgL;
  double worst() const {
    double m = 0;
    for (double e : {W, U, Gq, Kd, Aqk, EgL}) m = std::isfinite(e) ? std::max(m, e) : INFINITY;
    return m;
  }
};

Errors run(const Shape& s, Slip slip) {
  const In in = make_input(s.B, s.T, s.H, s.K, s.V, s.decay, 31u * s.T + 7u * s.K + s.V);
  const kimi::test::IntraOutputs ref = kimi::test::chunk_intra_reference(
      s.B, s.T, s.H, s.K, s.V, in.scale, in.q, in.k, in.v, in.g, in.beta);
  const Out o = emulate(in, slip);
  using kimi::test::rel_err_of;
  return {rel_err_of(o.W, ref.W),   rel_err_of(o.U, ref.U),     rel_err_of(o.Gq, ref.Gq),
          rel_err_of(o.Kd, ref.Kd), rel_err_of(o.Aqk, ref.Aqk), rel_err_of(o.EgL, ref.EgL)};
}

class IntraMmaTiles : public ::testing::TestWithParam<Shape> {};

TEST_P(IntraMmaTiles, EmulatedKernelMatchesReference) {
  const Shape s = GetParam();
  const Errors e = run(s, Slip::kNone);
  EXPECT_LT(e.W, 1e-2);
  EXPECT_LT(e.U, 1e-2);
  EXPECT_LT(e.Gq, 1e-2);
  EXPECT_LT(e.Kd, 1e-2);
  EXPECT_LT(e.Aqk, 1e-2);
  if (s.decay <= 10) {  // else exp(G_last) is below fp32's range
    EXPECT_LT(e.EgL, 1e-5);
  }
  std::printf("W %.2e U %.2e Gq %.2e Kd %.2e Aqk %.2e EgL %.2e\n", e.W, e.U, e.Gq, e.Kd, e.Aqk,
              e.EgL);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, IntraMmaTiles,
    ::testing::Values(Shape{2, 130, 1, 64, 128, 1.0},   // kD 128, K < kD, short last chunk
                      Shape{1, 77, 2, 128, 32, 1.0},    // V < K, U groups past V idle
                      Shape{1, 150, 1, 48, 40, 1.0},    // kD 64, K and V below it
                      Shape{1, 64, 1, 128, 128, 1.0},   // one whole chunk
                      Shape{1, 200, 1, 96, 72, 10.0},   // strong: diagonal blocks exact
                      Shape{1, 90, 1, 128, 64, 30.0},   // a split diagonal would overflow
                      Shape{1, 100, 1, 128, 128, 4.0},  // spans near the threshold
                      Shape{1, 40, 1, 32, 64, 0.05}),   // one short chunk, weak decays
    [](const ::testing::TestParamInfo<Shape>& i) {
      const Shape& s = i.param;
      return "T" + std::to_string(s.T) + "_K" + std::to_string(s.K) + "_V" + std::to_string(s.V) +
             "_decay" + std::to_string(int(s.decay * 100)) + "c";
    });

// Each slip must break the comparison on a shape where it matters (decays of up to 30 per token
// for the reference row and the exact path: a split diagonal block then overflows).
TEST(IntraMmaTiles, SlipsAreCaught) {
  const Shape mild{1, 130, 1, 64, 128, 1.0}, strong{1, 130, 1, 128, 96, 30.0};
  for (Slip s : {Slip::kARow, Slip::kBCol, Slip::kRhsTrans, Slip::kWuBlocks, Slip::kTinvBlock}) {
    const double w = run(mild, s).worst();
    EXPECT_FALSE(w < 5e-2) << "slip " << int(s) << " not caught: " << w;
  }
  for (Slip s : {Slip::kRefRow, Slip::kNoExact}) {
    const double w = run(strong, s).worst();
    EXPECT_FALSE(w < 5e-2) << "slip " << int(s) << " not caught: " << w;
  }
}

}  // namespace
