// The MLA decode attention alone (mla_attend: attend + merge, qa -> o_lat), the tensor-core
// kernel against the fp32 one against a float64 host softmax, on the 48B model's shape (H=32,
// rank 512, rope 64), a small shape the tensor-core kernel takes (H=16, rank 128, rope 16) and
// one it refuses (H=3, rank 20, rope 6: kAuto must fall back to the fp32 kernel, bit for bit).
// Lengths 1, tile-1, tile, tile+1, long; 1 to 64 splits (many of them empty); batch rows
// mapped to other slots at different lengths; the cache rows past each slot's length are NaN,
// so a kernel that reads (rather than zero-fills and masks) them fails. Part of
// kimi_cuda_engine_test; KIMI_MLA_TEST_QUICK=1 keeps the short cases (for the sanitizers).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "inference/engine/cuda/engine_kernels.h"
#include "tests/cuda/engine_kernel_util.h"

namespace kimi::inference::engine::cuda {
namespace {

using ktest::bf16_bits;
using ktest::bf16_val;
using ktest::Dev;
using ktest::have_gpu;

bool quick() {
  const char* v = std::getenv("KIMI_MLA_TEST_QUICK");
  return v && *v && std::strcmp(v, "0") != 0;
}

struct Shape {
  int H, rank, rope;
};

// Worst error / bound over the cases of a test, printed at its end.
struct Worst {
  double old_ref = 0, tc_ref = 0, tc_old = 0;
};

// One batch: n[b] rows attended by batch row b (its slot's length before the step is n[b] - 1).
void check_attend(const Shape& sh, const std::vector<int>& n, int splits, std::mt19937& rng,
                  Worst& worst) {
  const int H = sh.H, R = sh.rank, D = sh.rank + sh.rope, B = static_cast<int>(n.size());
  const int max_tokens = *std::max_element(n.begin(), n.end()) + 3;
  std::vector<int> slot_of(B), len(B);  // batch row b lives in slot B - 1 - b
  for (int b = 0; b < B; ++b) slot_of[b] = B - 1 - b, len[B - 1 - b] = n[b] - 1;
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint16_t> cache_b(static_cast<size_t>(B) * max_tokens * D, 0x7fc0);  // NaN
  std::vector<float> cache(cache_b.size(), 0.f);
  for (int s = 0; s < B; ++s)
    for (size_t i = 0; i < size_t(len[s] + 1) * D; ++i) {
      const size_t at = size_t(s) * max_tokens * D + i;
      cache_b[at] = bf16_bits(nd(rng)), cache[at] = bf16_val(cache_b[at]);
    }
  // Scores of standard deviation ~2: softmaxes neither flat nor one-hot.
  std::vector<float> qa(static_cast<size_t>(B) * H * D);
  for (float& x : qa) x = nd(rng) * 2.f / std::sqrt(float(D));
  Dev<uint16_t> d_cache(cache_b);
  Dev<float> d_qa(qa), d_po(std::vector<float>(size_t(B) * splits * H * R, 0.f)),
      d_pml(std::vector<float>(size_t(B) * splits * H * 2, 0.f)),
      d_olat(std::vector<float>(size_t(B) * H * R, 0.f));
  Dev<int> d_slots(slot_of), d_len(len);
  MlaStep a{};
  a.B = B, a.H = H, a.rope = sh.rope, a.rank = R;
  a.slots = d_slots.p, a.lengths = d_len.p;
  a.cache = reinterpret_cast<bf16*>(d_cache.p), a.max_tokens = max_tokens;
  a.qa = d_qa.p, a.part_o = d_po.p, a.part_ml = d_pml.p, a.o_lat = d_olat.p, a.splits = splits;
  auto run = [&](MlaKernel k) {
    mla_attend(a, k, nullptr);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return d_olat.get();
  };
  const bool tc = mla_attend_tc_fits(H, R, sh.rope);
  const std::vector<float> o_old = run(MlaKernel::kOld), o_auto = run(MlaKernel::kAuto);
  const std::vector<float> o_tc = tc ? run(MlaKernel::kTensorCore) : std::vector<float>();
  // kAuto is one of the two kernels, exactly.
  EXPECT_EQ(0, std::memcmp(o_auto.data(), (tc ? o_tc : o_old).data(), o_auto.size() * 4))
      << "kAuto is not the " << (tc ? "tensor-core" : "fp32") << " kernel";
  const double u = std::ldexp(1.0, -9);  // bf16 rounding, relative, to nearest
  int failures = 0;
  for (int b = 0; b < B; ++b) {
    const float* rows = &cache[size_t(slot_of[b]) * max_tokens * D];
    for (int h = 0; h < H; ++h) {
      const float* q = &qa[(size_t(b) * H + h) * D];
      // s: the scores with the fp32 queries; sb: with the queries rounded to bf16 (the tensor
      // kernel's input); abs_qc: sum |q_bf16 c| (the fp32 accumulation's scale).
      std::vector<double> qb(D);
      for (int e = 0; e < D; ++e) qb[e] = bf16_val(bf16_bits(q[e]));
      const ktest::Softmax sm = ktest::softmax_rows(q, rows, n[b], D, 1.0);
      const ktest::Softmax smb = ktest::softmax_rows(qb.data(), rows, n[b], D, 1.0);
      const std::vector<double>&s = sm.w, &sb = smb.w;  // normalised weights
      double abs_qc = 0, dq = 0;
      for (int t = 0; t < n[b]; ++t) {
        double ab = 0;
        for (int e = 0; e < D; ++e) ab += std::abs(qb[e] * rows[size_t(t) * D + e]);
        abs_qc = std::max(abs_qc, ab), dq = std::max(dq, std::abs(sm.score[t] - smb.score[t]));
      }
      // The tensor kernel's output is sum_t p^_t c_t / sum_t p^_t with p^_t = bf16(p~_t), p~_t
      // = exp(s~_t - m) from fp32 scores s~_t of the bf16 queries: p^_t = p_t e^{d_t} (1 + e_t),
      // |e_t| <= u = 2^-9 (bf16's rounding), |d_t| <= eta (the fp32 accumulation of the score,
      // allowed 2^-16 of sum |q c|: 36 k-steps of mma accumulations at a few fp32 ulps each).
      // Every normalised weight is then the exact one times a factor in
      // [e^{-2 eta} (1-u)/(1+u), e^{2 eta} (1+u)/(1-u)], so
      //   |o_r - ref_r| <= kappa * sum_t w_t |c_tr|,   kappa = e^{2 eta} (1+u)/(1-u) - 1 ~ 2u,
      // plus 1e-5 of fp32 slack (P.tile's accumulation, the merge's exp factors). The fp32
      // kernel against the fp32-query reference: 1e-4 of max |c|. The two kernels against
      // each other: both bounds plus the queries' bf16 rounding, (e^{2 dq} - 1) sum w |c| with
      // dq the largest score change it makes (measured here).
      const double eta = std::ldexp(abs_qc, -16);
      const double kappa = std::exp(2 * eta) * (1 + u) / (1 - u) - 1 + 1e-5;
      const double kq = std::exp(2 * dq) - 1;
      for (int r = 0; r < R; ++r) {
        double ref = 0, refb = 0, awb = 0, aw = 0, cmax = 0;
        for (int t = 0; t < n[b]; ++t) {
          const double c = rows[size_t(t) * D + r];
          ref += s[t] * c, refb += sb[t] * c;
          aw += s[t] * std::abs(c), awb += sb[t] * std::abs(c), cmax = std::max(cmax, std::abs(c));
        }
        const size_t at = (size_t(b) * H + h) * R + r;
        const double tol_old = 1e-4 * cmax + 1e-6;
        const double e_old = std::abs(o_old[at] - ref);
        worst.old_ref = std::max(worst.old_ref, e_old / tol_old);
        bool ok = e_old <= tol_old;
        if (tc) {
          const double tol_tc = kappa * awb + 1e-5 * cmax + 1e-6;
          const double tol_x = tol_tc + kq * aw + tol_old;
          const double e_tc = std::abs(o_tc[at] - refb), e_x = std::abs(o_tc[at] - o_old[at]);
          worst.tc_ref = std::max(worst.tc_ref, e_tc / tol_tc);
          worst.tc_old = std::max(worst.tc_old, e_x / tol_x);
          ok = ok && e_tc <= tol_tc && e_x <= tol_x;
          if (!ok && failures < 8)
            ADD_FAILURE() << "b " << b << " h " << h << " r " << r << " n " << n[b] << " splits "
                          << splits << ": old " << o_old[at] << " tc " << o_tc[at] << " ref " << ref
                          << " ref(q bf16) " << refb << " tol old " << tol_old << " tol tc "
                          << tol_tc;
        } else if (!ok && failures < 8) {
          ADD_FAILURE() << "b " << b << " h " << h << " r " << r << " n " << n[b] << " splits "
                        << splits << ": old " << o_old[at] << " ref " << ref;
        }
        failures += !ok;
      }
    }
  }
  EXPECT_EQ(failures, 0) << "H " << H << " rank " << R << " rope " << sh.rope << " splits "
                         << splits;
}

void print_worst(const char* name, const Worst& w) {
  std::printf(
      "[ mla attend ] %s: worst error / bound: fp32 kernel vs ref %.3f, tensor vs ref(q "
      "bf16) %.3f, tensor vs fp32 kernel %.3f\n",
      name, w.old_ref, w.tc_ref, w.tc_old);
}

TEST(EngineKernels, MlaAttendTensorCoresMatchFp32AndHostOn48BShape) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape sh{32, 512, 64};
  ASSERT_TRUE(mla_attend_tc_fits(sh.H, sh.rank, sh.rope));
  std::mt19937 rng(21);
  Worst w;
  const std::vector<int> lens = quick() ? std::vector<int>{1, 33, 200}
                                        : std::vector<int>{1, 31, 32, 33, 63, 64, 65, 1000, 4097};
  const std::vector<int> splits = quick() ? std::vector<int>{1, 3} : std::vector<int>{1, 7, 64};
  for (int n : lens)
    for (int sp : splits) check_attend(sh, {n}, sp, rng, w);
  // B = 3 at different lengths (batch rows in other slots).
  check_attend(sh, {1, 64, 65}, 2, rng, w);
  if (!quick()) {
    check_attend(sh, {1000, 33, 4097}, 5, rng, w);
    check_attend(sh, {1000, 33, 4097}, 64, rng, w);
  }
  print_worst("H=32 rank 512 rope 64", w);
}

TEST(EngineKernels, MlaAttendTensorCoresOnASmallShape) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape sh{16, 128, 16};
  ASSERT_TRUE(mla_attend_tc_fits(sh.H, sh.rank, sh.rope));
  std::mt19937 rng(22);
  Worst w;
  for (int n : {1, 63, 64, 65, 300})
    for (int sp : {1, 3}) check_attend(sh, {n}, sp, rng, w);
  check_attend(sh, {300, 1, 65}, 4, rng, w);
  print_worst("H=16 rank 128 rope 16", w);
}

TEST(EngineKernels, MlaAttendFallsBackToFp32OnOddShapes) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(23);
  for (const Shape& sh : {Shape{3, 20, 6}, Shape{32, 512, 8}, Shape{8, 128, 16}}) {
    EXPECT_FALSE(mla_attend_tc_fits(sh.H, sh.rank, sh.rope)) << sh.H << " " << sh.rank;
    Worst w;
    check_attend(sh, {31, 1, 100}, 3, rng, w);
    check_attend(sh, {33}, 1, rng, w);
  }
}

}  // namespace
}  // namespace kimi::inference::engine::cuda
