// CPU copies of views, the leading-dims sum and broadcasting binary ops: a permuted view made
// contiguous moves every element's bits (int64 past 2^53, bf16), a narrowed one too; sum over
// leading dims (the broadcast-gradient reduction) equals a plain double sum, for sizes below and
// above one group; binary ops on permuted, broadcast and narrowed operands equal the op taken
// element by element.
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

TEST(CpuSum, MiddleDimsEqualAPlainDoubleSum) {
  // [A, M1, M2, C] summed over the middle run (1, 2), and over (1) alone of a [A, M, C].
  const Shape s{5, 3, 4, 6};
  std::vector<float> v(5 * 3 * 4 * 6);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 31) % 97) / 13.0f;
  const Tensor x = Tensor::from_vector(v, s);
  const std::vector<float> got = sum(x, {1, 2}).to_vector<float>();
  ASSERT_EQ(got.size(), 5u * 6u);
  for (int64_t a = 0; a < 5; ++a)
    for (int64_t c = 0; c < 6; ++c) {
      double want = 0;
      for (int64_t m = 0; m < 12; ++m) want += v[static_cast<size_t>((a * 12 + m) * 6 + c)];
      EXPECT_NEAR(got[a * 6 + c], want, 1e-6 * std::abs(want)) << a << " " << c;
    }
  const std::vector<float> one = sum(x, {2}, /*keepdim=*/true).to_vector<float>();
  ASSERT_EQ(one.size(), 5u * 3u * 6u);
  for (int64_t r = 0; r < 15; ++r)
    for (int64_t c = 0; c < 6; ++c) {
      double want = 0;
      for (int64_t m = 0; m < 4; ++m) want += v[static_cast<size_t>((r * 4 + m) * 6 + c)];
      EXPECT_NEAR(one[r * 6 + c], want, 1e-6 * std::abs(want)) << r << " " << c;
    }
}

TEST(CpuBinary, BroadcastAndStridedOperandsAgainstElementByElement) {
  // a [2, 3, 4, 5] permuted from [4, 2, 5, 3]; b broadcast from [3, 1, 5] and [1] and a
  // narrowed view: every op, every element against the value computed from the two indices.
  std::vector<float> av(4 * 2 * 5 * 3), bv(3 * 5), cv(2 * 3 * 4 * 7);
  for (size_t i = 0; i < av.size(); ++i) av[i] = 0.5f + static_cast<float>(i % 17) * 0.25f;
  for (size_t i = 0; i < bv.size(); ++i) bv[i] = 1.0f + static_cast<float>(i) * 0.125f;
  for (size_t i = 0; i < cv.size(); ++i) cv[i] = 2.0f - static_cast<float>(i % 11) * 0.0625f;
  const Tensor a = Tensor::from_vector(av, {4, 2, 5, 3}).permute({1, 3, 0, 2});  // [2, 3, 4, 5]
  const Tensor b = Tensor::from_vector(bv, {3, 1, 5});
  const Tensor c = Tensor::from_vector(cv, {2, 3, 4, 7}).narrow(3, 1, 5);
  const Tensor one = Tensor::from_vector(std::vector<float>{3.0f}, {1});
  auto A = [&](int64_t i, int64_t j, int64_t k, int64_t l) {
    return av[((k * 2 + i) * 5 + l) * 3 + j];
  };
  auto B = [&](int64_t, int64_t j, int64_t, int64_t l) { return bv[j * 5 + l]; };
  auto C = [&](int64_t i, int64_t j, int64_t k, int64_t l) {
    return cv[((i * 3 + j) * 4 + k) * 7 + 1 + l];
  };
  struct Case {
    Tensor got;
    float (*f)(float, float);
    bool use_c, use_one;
  };
  const Case cases[] = {
      {add(a, b), [](float x, float y) { return x + y; }, false, false},
      {sub(b, a), [](float x, float y) { return y - x; }, false, false},
      {mul(a, c), [](float x, float y) { return x * y; }, true, false},
      {div(c, a), [](float x, float y) { return y / x; }, true, false},
      {maximum(a, b), [](float x, float y) { return x >= y ? x : y; }, false, false},
      {mul(a, one), [](float x, float y) { return x * y; }, false, true},
  };
  for (const Case& cs : cases) {
    ASSERT_EQ(cs.got.shape(), (Shape{2, 3, 4, 5}));
    const std::vector<float> g = cs.got.to_vector<float>();
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j)
        for (int64_t k = 0; k < 4; ++k)
          for (int64_t l = 0; l < 5; ++l) {
            const float y = cs.use_one ? 3.0f : cs.use_c ? C(i, j, k, l) : B(i, j, k, l);
            ASSERT_EQ(g[((i * 3 + j) * 4 + k) * 5 + l], cs.f(A(i, j, k, l), y))
                << i << " " << j << " " << k << " " << l;
          }
  }
}

}  // namespace
