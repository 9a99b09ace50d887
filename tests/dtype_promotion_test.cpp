// Float type promotion of the binary ops and where (core/ops/ops.h promote_float), and the autocast
// helpers (core/nn/layers.h) on the CPU: BF16 CPU tensors are storage only, but mixed operands
// promote to F32 before any kernel, so the rules are testable without a GPU.
#include <gtest/gtest.h>

#include <vector>

#include "core/backend/precision.h"
#include "core/nn/layers.h"
#include "core/ops/ops.h"

namespace {

using namespace kimi;

// Values exact in bf16, so the F32 result is exact too.
Tensor leaf(const std::vector<float>& v, const Shape& s, DType t) {
  Tensor x = Tensor::from_vector(v, s).to(t);
  x.set_requires_grad(true);
  return x;
}

TEST(DTypePromotion, TheWiderFloatWinsAsInPyTorch) {
  EXPECT_EQ(promote_float(DType::kF32, DType::kBF16), DType::kF32);
  EXPECT_EQ(promote_float(DType::kBF16, DType::kF32), DType::kF32);
  EXPECT_EQ(promote_float(DType::kBF16, DType::kF16), DType::kF32);
  EXPECT_EQ(promote_float(DType::kF64, DType::kBF16), DType::kF64);
  EXPECT_EQ(promote_float(DType::kF32, DType::kF64), DType::kF64);
  EXPECT_EQ(promote_float(DType::kBF16, DType::kBF16), DType::kBF16);
  EXPECT_THROW(promote_float(DType::kI32, DType::kF32), Error);
  Tensor i = Tensor::from_vector(std::vector<int32_t>{1, 2}, {2});
  EXPECT_THROW(add(i, Tensor::ones({2})), Error);
}

TEST(DTypePromotion, MixedBinaryOpsGiveF32AndEachGradientInItsOwnDtype) {
  Tensor a = leaf({1.5f, -2.0f, 0.25f, 4.0f, 3.0f, -0.5f}, {2, 3}, DType::kBF16);
  Tensor b = leaf({2.0f, 0.5f, -1.0f}, {3}, DType::kF32);  // broadcast over rows
  Tensor y = mul(a, b);
  EXPECT_EQ(y.dtype(), DType::kF32);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{3.0f, -1.0f, -0.25f, 8.0f, 1.5f, 0.5f}));
  // One use of each leaf: CPU kernels cannot add two BF16 gradients (storage-only dtype).
  sum(y).backward();
  ASSERT_TRUE(a.grad().defined() && b.grad().defined());
  EXPECT_EQ(a.grad().dtype(), DType::kBF16);
  EXPECT_EQ(b.grad().dtype(), DType::kF32);
  EXPECT_EQ(a.grad().to_vector<float>(),
            (std::vector<float>{2.0f, 0.5f, -1.0f, 2.0f, 0.5f, -1.0f}));
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{5.5f, 1.0f, -0.25f}));
  EXPECT_EQ(sub(b, a.detach()).dtype(), DType::kF32);
  EXPECT_EQ(div(b, a.narrow(0, 0, 1)).dtype(), DType::kF32);
  EXPECT_EQ(maximum(a, b).dtype(), DType::kF32);
  EXPECT_EQ(add(a.detach().to(DType::kF64), b).dtype(), DType::kF64);
}

TEST(DTypePromotion, WherePromotesItsTwoSides) {
  Tensor a = leaf({1.0f, 2.0f, 3.0f}, {3}, DType::kBF16);
  Tensor b = leaf({-1.0f, -2.0f, -3.0f}, {3}, DType::kF32);
  Tensor cond = Tensor::from_vector(std::vector<int32_t>{1, 0, 1}, {3});
  Tensor y = where(cond, a, b);
  EXPECT_EQ(y.dtype(), DType::kF32);
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{1.0f, -2.0f, 3.0f}));
  sum(y).backward();
  EXPECT_EQ(a.grad().dtype(), DType::kBF16);
  EXPECT_EQ(a.grad().to_vector<float>(), (std::vector<float>{1.0f, 0.0f, 1.0f}));
  EXPECT_EQ(b.grad().dtype(), DType::kF32);
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{0.0f, 1.0f, 0.0f}));
}

// The CPU path stays F32 (bit for bit) even with autocast on: autocast touches CUDA tensors only.
TEST(Autocast, IsTheIdentityOnTheCpu) {
  EXPECT_EQ(activation_dtype(), DType::kF32);
  ActivationDTypeGuard on(DType::kBF16);
  EXPECT_EQ(activation_dtype(), DType::kBF16);
  Tensor x = Tensor::ones({2, 4});
  EXPECT_TRUE(nn::autocast(x).same(x));
  Tensor w = Tensor::ones({4});
  EXPECT_TRUE(nn::cast_like(w, x).same(w));
  Tensor xb = x.to(DType::kBF16);
  EXPECT_EQ(nn::cast_like(w, xb).dtype(), DType::kBF16);
  EXPECT_FALSE(nn::cast_like(Tensor(), xb).defined());
  Rng rng(1);
  nn::Linear lin(4, 3, true, rng);
  EXPECT_EQ(lin.forward(x).dtype(), DType::kF32);
}

}  // namespace
