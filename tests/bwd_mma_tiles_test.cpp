// The bf16 tensor-core products of the chunk backward's B3 (UT backward) and B4 (Gram backward)
// kernels (core/cuda/delta_rule/bwd_mma.cuh) run on the host: each lane's fragment gathers from
// fp32 shared tiles (bwd_mma_tiles.h), the bf16 rounding, mma.sync m16n8k16 emulated as the PTX
// ISA defines its fragments (tests/mma_emulation.h), the C-fragment store with alpha and
// accumulate, and block_gemm_bf16's tile loop over the warps of a 512-thread block; against the
// product in double of the bf16-rounded operands. Every transposition the kernels use, with the
// kernels' strides (kLdA = 68, kD + 4 = 132 / 68, 64 + 4) and pointer offsets into larger tiles
// (B4's row block r, column block J). fp32 accumulation of exact bf16 products gives ~1e-6; an
// index slip gives O(1), and the deliberate slips below must be caught.
#include "core/cuda/delta_rule/bwd_mma_tiles.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "tests/mma_emulation.h"

namespace {

namespace bt = kimi::cuda::detail::chunk::bwd_mma_tiles;
using kimi::test::mma_emu::bf16_round;
constexpr int kBS = 16, kWarps = 16;

enum class Slip { kNone, kCTransposed, kBHalfSwapped };

// mma_16x16_bf16 for one warp: acc[lane][nt][e] += op(A) op(B) over kdim.
template <bool kAT, bool kBT>
void warp_tile(float acc[32][2][4], const float* a, int lda, const float* b, int ldb, int kdim,
               Slip slip) {
  for (int k0 = 0; k0 < kdim; k0 += 16) {
    float fa[32][4][2], fb[2][32][2][2];
    for (int l = 0; l < 32; ++l) {
      bt::gather_a<kAT>(a, lda, k0, l, fa[l]);
      for (int nt = 0; nt < 2; ++nt) bt::gather_b<kBT>(b, ldb, k0, 8 * nt, l, fb[nt][l]);
      for (auto& r : fa[l])
        for (float& x : r) x = bf16_round(x);
      for (int nt = 0; nt < 2; ++nt)
        for (auto& r : fb[nt][l]) {
          for (float& x : r) x = bf16_round(x);
          if (slip == Slip::kBHalfSwapped) std::swap(r[0], r[1]);
        }
    }
    for (int nt = 0; nt < 2; ++nt) {
      float c[32][4];
      for (int l = 0; l < 32; ++l)
        for (int e = 0; e < 4; ++e) c[l][e] = acc[l][nt][e];
      kimi::test::mma_emu::mma(c, fa, fb[nt]);
      for (int l = 0; l < 32; ++l)
        for (int e = 0; e < 4; ++e) acc[l][nt][e] = c[l][e];
    }
  }
}

// store_16x16 for one warp.
void store_tile(float* c, int ldc, const float acc[32][2][4], float alpha, bool accumulate,
                Slip slip) {
  for (int l = 0; l < 32; ++l)
    for (int nt = 0; nt < 2; ++nt)
      for (int e = 0; e < 4; ++e) {
        bt::RowCol x = bt::c_elem(l, e);
        if (slip == Slip::kCTransposed) std::swap(x.row, x.col);
        float& p = c[x.row * ldc + 8 * nt + x.col];
        p = accumulate ? p + alpha * acc[l][nt][e] : alpha * acc[l][nt][e];
      }
}

// block_gemm_bf16: the tiles of C spread over kWarps warps, as the device loop does.
template <bool kAT, bool kBT>
void block_gemm(float* C, int ldc, const float* A, int lda, const float* B, int ldb, int M, int N,
                int kdim, float alpha, bool accumulate, Slip slip = Slip::kNone) {
  const int tn = N / kBS, ntiles = (M / kBS) * tn;
  for (int warp = 0; warp < kWarps; ++warp)
    for (int t = warp; t < ntiles; t += kWarps) {
      const int I = t / tn, J = t % tn;
      float acc[32][2][4] = {};
      warp_tile<kAT, kBT>(acc, kAT ? A + I * kBS : A + I * kBS * lda, lda,
                          kBT ? B + J * kBS * ldb : B + J * kBS, ldb, kdim, slip);
      store_tile(C + I * kBS * ldc + J * kBS, ldc, acc, alpha, accumulate, slip);
    }
}

std::vector<float> random_tile(int rows, int ld, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(size_t(rows) * ld);
  for (float& y : x) y = u(rng);  // not bf16 values: the gathers must round
  return x;
}

// Largest |got - ref| / max|ref| over C, with ref = C0 (if accumulating) + alpha op(A) op(B) in
// double of the bf16-rounded operands. NaN anywhere (an element never written) gives inf.
template <bool kAT, bool kBT>
double gemm_error(int M, int N, int kdim, int lda, int ldb, int ldc, float alpha, bool accumulate,
                  Slip slip, uint32_t seed) {
  if (lda < (kAT ? M : kdim) || ldb < (kBT ? kdim : N) || ldc < N) {
    ADD_FAILURE() << "a stride shorter than its tile's rows";
    return std::numeric_limits<double>::infinity();
  }
  std::mt19937 rng(seed);
  const auto A = random_tile(kAT ? kdim : M, lda, rng), B = random_tile(kBT ? N : kdim, ldb, rng);
  const auto C0 = random_tile(M, ldc, rng);
  std::vector<float> C = C0;
  if (!accumulate)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) C[size_t(i) * ldc + j] = std::numeric_limits<float>::quiet_NaN();
  block_gemm<kAT, kBT>(C.data(), ldc, A.data(), lda, B.data(), ldb, M, N, kdim, alpha, accumulate,
                       slip);
  double err = 0, mx = 0;
  std::vector<double> ref(size_t(M) * N);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < kdim; ++k) {
        const float a = kAT ? A[size_t(k) * lda + i] : A[size_t(i) * lda + k];
        const float b = kBT ? B[size_t(j) * ldb + k] : B[size_t(k) * ldb + j];
        s += double(bf16_round(a)) * bf16_round(b);
      }
      ref[size_t(i) * N + j] = (accumulate ? C0[size_t(i) * ldc + j] : 0.0) + alpha * s;
      mx = std::max(mx, std::abs(ref[size_t(i) * N + j]));
    }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      const double g = C[size_t(i) * ldc + j];
      if (std::isnan(g)) return std::numeric_limits<double>::infinity();
      err = std::max(err, std::abs(g - ref[size_t(i) * N + j]));
    }
  return err / mx;
}

constexpr double kTol = 1e-5;  // fp32 sums of exact bf16 products (kdim <= 128)

// B3's four UT products at kD = 128 and 64 (strides kD + 4, kLdA): dR = T^T X (A transposed,
// 64 x kD over k = 64) and dA = -dR Y^T (+= for the second, B transposed, 64 x 64 over kD).
TEST(BwdMmaTiles, UtProducts) {
  for (int kD : {128, 64}) {
    const int ldk = kD + 4, ldA = 68;
    EXPECT_LT((gemm_error<true, false>(64, kD, 64, ldA, ldk, ldk, 1.f, false, Slip::kNone, 1)),
              kTol)
        << "T^T X, kD " << kD;
    EXPECT_LT((gemm_error<false, true>(64, 64, kD, ldk, ldk, ldA, -1.f, false, Slip::kNone, 2)),
              kTol)
        << "-dR U^T, kD " << kD;
    EXPECT_LT((gemm_error<false, true>(64, 64, kD, ldk, ldk, ldA, -1.f, true, Slip::kNone, 3)),
              kTol)
        << "dA -= dR W^T, kD " << kD;
  }
}

// A_kk's off-diagonal blocks (B3): a 16 x 16 tile of X X'^T over kD (A and B transposed rows of
// one fp32 tile), and B4's Y = X[I, :r] sB (k = r = 16, 32, 48) and Z = X[I, :r]^T aQ through
// pointers offset into larger tiles.
TEST(BwdMmaTiles, GramProducts) {
  for (int kD : {128, 64})
    EXPECT_LT((gemm_error<false, true>(16, 16, kD, kD + 4, kD + 4, 68, 1.f, false, Slip::kNone, 4)),
              kTol)
        << "A_kk block, kD " << kD;
  std::mt19937 rng(5);
  const double kInf = std::numeric_limits<double>::infinity();
  constexpr int ld = 68, ldA = 68;
  const auto X = random_tile(64, ldA, rng), sB = random_tile(64, ld, rng);
  for (int r : {16, 32, 48}) {
    // Y (16 x 64) = X[r:r+16, :r] sB[:r, :]
    std::vector<float> Y(16 * ld, std::numeric_limits<float>::quiet_NaN());
    block_gemm<false, false>(Y.data(), ld, X.data() + r * ldA, ldA, sB.data(), ld, 16, 64, r, 1.f,
                             false);
    // Z rows J (16 x 64) = X[r:r+16, J*16:J*16+16]^T aQ (aQ: 16 x 64), J < r / 16
    std::vector<float> Z(size_t(r) * ld, std::numeric_limits<float>::quiet_NaN());
    block_gemm<true, false>(Z.data(), ld, X.data() + r * ldA, ldA, sB.data(), ld, r, 64, 16, 1.f,
                            false);
    double ey = 0, ez = 0;
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 64; ++j) {
        double s = 0;
        for (int k = 0; k < r; ++k)
          s += double(bf16_round(X[(r + i) * ldA + k])) * bf16_round(sB[k * ld + j]);
        ey = std::isnan(Y[i * ld + j]) ? kInf : std::max(ey, std::abs(Y[i * ld + j] - s));
      }
    for (int m = 0; m < r; ++m)
      for (int j = 0; j < 64; ++j) {
        double s = 0;
        for (int k = 0; k < 16; ++k)
          s += double(bf16_round(X[(r + k) * ldA + m])) * bf16_round(sB[k * ld + j]);
        ez = std::isnan(Z[m * ld + j]) ? kInf : std::max(ez, std::abs(Z[m * ld + j] - s));
      }
    EXPECT_LT(ey, 1e-4) << "Y, r " << r;  // |Y| <= r: absolute (inf: an element left unwritten)
    EXPECT_LT(ez, 1e-4) << "Z, r " << r;
  }
}

// The check has teeth: a C fragment stored transposed, or the two halves of a B register
// swapped, fail by O(1).
TEST(BwdMmaTiles, SlipsAreCaught) {
  EXPECT_GT((gemm_error<true, false>(64, 128, 64, 68, 132, 132, 1.f, false, Slip::kCTransposed, 6)),
            5e-2);
  EXPECT_GT(
      (gemm_error<false, true>(64, 64, 128, 132, 132, 68, 1.f, false, Slip::kBHalfSwapped, 7)),
      5e-2);
}

}  // namespace
