// Finite-difference gradient checks for every op in core/backend/op_list.h: the OpList test that
// fails for an op without a case, one parameterised test per registered case (the cases live
// in tests/op_gradcheck_cases.cpp and tests/mixer_gradcheck_cases.cpp), and semantics that
// finite differences cannot see.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/backend/op_list.h"
#include "tests/gradcheck.h"

namespace {

using namespace kimi;
using namespace kimi::testing;
using Ins = std::vector<Tensor>;
using Outs = std::vector<Tensor>;

// --- semantics that finite differences cannot see -----------------------------------------

// The harness itself must catch a wrong backward (here dy/dx = x for y = x^2).
TEST(OpGradHarness, CatchesAWrongBackward) {
  OpFn bad = [](const Ins& in) {
    Tensor x = in[0], y;
    {
      NoGradGuard no_grad;
      y = mul(x, x);
    }
    return Outs{record("bad_square", y, {x},
                       [x](const Outs& g) -> Outs { return {mul(g[0], x.detach())}; })};
  };
  std::mt19937_64 rng(3);
  GradcheckResult r = gradcheck(bad, {rand_t(rng, {3, 4})});
  EXPECT_FALSE(r.ok) << r.report;
  EXPECT_GT(r.input_err[0], 0.1);
}

// PyTorch: nn.Conv1d(1, 1, 3, groups=1, padding=2, bias=False)(x)[..., :T] with weight
// [w0, w1, w2] gives y[t] = w0 x[t-2] + w1 x[t-1] + w2 x[t].
TEST(OpGradSemantics, CausalConvMatchesTorchConv1dConvention) {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3}, {1, 3, 1});
  Tensor w = Tensor::from_vector(std::vector<double>{10, 100, 1000}, {1, 3});
  EXPECT_EQ(causal_conv1d(x, w).to_vector<double>(), (std::vector<double>{1000, 2100, 3210}));
}

// Decoding: conv(second half, prefix = last W-1 inputs of the first half) = second half of
// conv(whole sequence).
TEST(OpGradSemantics, CausalConvPrefixContinuesTheSequence) {
  std::mt19937_64 rng(5);
  Tensor x = rand_t(rng, {2, 7, 3}, -1, 1, false), w = rand_t(rng, {3, 4}, -1, 1, false);
  Tensor b = rand_t(rng, {3}, -1, 1, false);
  std::vector<double> full =
      causal_conv1d(x, w, b).narrow(1, 4, 3).contiguous().to_vector<double>();
  std::vector<double> tail =
      causal_conv1d(x.narrow(1, 4, 3), w, b, x.narrow(1, 1, 3)).to_vector<double>();
  ASSERT_EQ(full.size(), tail.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_NEAR(full[i], tail[i], 1e-12);
}

TEST(OpGradSemantics, ErrorsNameTheBadValue) {
  Tensor w = Tensor::zeros({5, 2}, DType::kF64);
  try {
    embedding(w, Tensor::from_vector(std::vector<int32_t>{0, 7}, {2}));
    ADD_FAILURE() << "no error for id 7 of 5";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("id 7"), std::string::npos) << e.what();
  }
  try {
    cross_entropy(Tensor::zeros({2, 3}, DType::kF64),
                  Tensor::from_vector(std::vector<int64_t>{1, 3}, {2}));
    ADD_FAILURE() << "no error for target 3 of 3 classes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("target 3"), std::string::npos) << e.what();
  }
}

TEST(OpGradSemantics, CrossEntropyMatchesLogSoftmax) {
  std::mt19937_64 rng(9);
  Tensor x = rand_t(rng, {4, 5}, -3, 3, false);
  Tensor t = Tensor::from_vector(std::vector<int64_t>{2, -100, 0, 4}, {4});
  std::vector<double> ls = log_softmax(x).to_vector<double>();
  const double want = -(ls[0 * 5 + 2] + ls[2 * 5 + 0] + ls[3 * 5 + 4]) / 3;
  EXPECT_NEAR(cross_entropy(x, t).item(), want, 1e-12);
}

// --- the tests ----------------------------------------------------------------------------------

std::string case_name(const GradCase& c) { return c.op + "_" + c.label; }

TEST(OpList, EveryOpHasAGradientCheck) {
  std::set<std::string> have;
  for (const GradCase& c : grad_cases()) have.insert(c.op);
  std::string missing;
  for (const char* op : kOpNames)
    if (!have.count(op)) missing += std::string(missing.empty() ? "" : ", ") + op;
  EXPECT_TRUE(missing.empty()) << "ops in core/backend/op_list.h without a gradient-check case: "
                               << missing;
}

TEST(OpList, EveryCaseNamesAListedOpOnce) {
  std::set<std::string> ops(std::begin(kOpNames), std::end(kOpNames)), names;
  for (const GradCase& c : grad_cases()) {
    EXPECT_TRUE(ops.count(c.op)) << "case '" << c.label << "' names unknown op '" << c.op << "'";
    EXPECT_TRUE(names.insert(case_name(c)).second) << "duplicate case " << case_name(c);
  }
}

class OpGradCase : public ::testing::TestWithParam<size_t> {};

TEST_P(OpGradCase, Check) { grad_cases().at(GetParam()).run(); }

// The generator runs after static initialisation, so cases from every file are in.
INSTANTIATE_TEST_SUITE_P(OpGrad, OpGradCase, ::testing::Range<size_t>(0, grad_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return case_name(grad_cases().at(info.param));
                         });

}  // namespace
