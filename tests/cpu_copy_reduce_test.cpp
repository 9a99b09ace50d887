// CPU copies of views and the leading-dims sum: a permuted view made contiguous moves every
// element's bits (int64 past 2^53, bf16), a narrowed one too; sum over leading dims (the
// broadcast-gradient reduction) equals a plain double sum, for sizes below and above one group.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/ops/ops.h"

namespace {

using namespace kimi;

TEST(CpuCopy, PermutedAndNarrowedViewsKeepEveryBit) {
  std::vector<int64_t> v(3 * 4 * 5);
  for (size_t i = 0; i < v.size(); ++i) v[i] = (int64_t(1) << 60) + static_cast<int64_t>(i);
  const Tensor x = Tensor::from_vector(v, {3, 4, 5});
  const std::vector<int64_t> got = x.permute({2, 0, 1}).contiguous().to_vector<int64_t>();
  for (int64_t c = 0; c < 5; ++c)
    for (int64_t a = 0; a < 3; ++a)
      for (int64_t b = 0; b < 4; ++b)
        ASSERT_EQ(got[(c * 3 + a) * 4 + b], v[(a * 4 + b) * 5 + c]) << a << " " << b << " " << c;
  const std::vector<int64_t> nar = x.narrow(2, 1, 3).contiguous().to_vector<int64_t>();
  for (int64_t r = 0; r < 12; ++r)
    for (int64_t j = 0; j < 3; ++j) ASSERT_EQ(nar[r * 3 + j], v[r * 5 + 1 + j]);
  // bf16: the same values after a transpose (bits moved, not converted twice).
  std::vector<float> f(6 * 7);
  for (size_t i = 0; i < f.size(); ++i) f[i] = 1.0f + 0.0078125f * static_cast<float>(i);
  const Tensor b = Tensor::from_vector(f, {6, 7}).to(DType::kBF16);
  const std::vector<float> bt = b.transpose(0, 1).contiguous().to_vector<float>();
  const std::vector<float> bb = b.to_vector<float>();
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 7; ++j) ASSERT_EQ(bt[j * 6 + i], bb[i * 7 + j]);
}

TEST(CpuSum, LeadingDimsEqualAPlainDoubleSum) {
  for (const Shape& s : {Shape{3, 5, 4}, Shape{7, 600, 5}, Shape{2, 9000, 3}}) {
    const int64_t M = s[0] * s[1], C = s[2];
    std::vector<float> v(static_cast<size_t>(M * C));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 7919) % 1000) / 997.0f;
    const std::vector<float> got = sum(Tensor::from_vector(v, s), {0, 1}).to_vector<float>();
    ASSERT_EQ(static_cast<int64_t>(got.size()), C);
    for (int64_t c = 0; c < C; ++c) {
      double want = 0;
      for (int64_t r = 0; r < M; ++r) want += v[static_cast<size_t>(r * C + c)];
      EXPECT_NEAR(got[c], want, 1e-6 * std::abs(want)) << shape_str(s) << " column " << c;
    }
  }
}

}  // namespace
