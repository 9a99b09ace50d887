// The token-mixer ops through the backend interface on the CPU (core/backend/backend.h): the CPU
// backend supports every size and chunk the CUDA kernels refuse (K > 128, chunk != 64, head dims
// > 256), the recurrence ops run them, and its CPU table keeps its one-dtype rule.
#include <gtest/gtest.h>

#include <string>

#include "core/backend/backend.h"
#include "core/ops/mixer_ops.h"

namespace {

using namespace kimi;

TEST(MixerBackend, CpuSupportsWhatCudaRefuses) {
  const OpContext ctx = OpContext::current();
  OpQuery rec{Op::k_delta_rule,
              DType::kF64,
              {{1, 3, 1, 256}, {1, 3, 1, 256}, {1, 3, 1, 300}},
              32,
              true,
              ctx};
  EXPECT_NO_THROW(check_supported(Device::kCPU, rec));
  OpQuery attn{Op::k_causal_attention,
               DType::kF64,
               {{1, 2, 1, 512}, {1, 2, 1, 512}, {1, 2, 1, 300}},
               0,
               false,
               ctx};
  EXPECT_NO_THROW(check_supported(Device::kCPU, attn));
}

TEST(MixerBackend, CpuRecurrenceRunsWideKeysAndAnyChunk) {
  const int64_t B = 1, T = 5, H = 1, K = 130, V = 3;
  Tensor q = Tensor::full({B, T, H, K}, 0.01, DType::kF64), k = q;
  Tensor v = Tensor::ones({B, T, H, V}, DType::kF64);
  Tensor g = Tensor::full({B, T, H}, -0.1, DType::kF64);
  Tensor beta = Tensor::full({B, T, H}, 0.5, DType::kF64);
  RecurrenceOptions chunk{GateKind::kScalar, -1, RecurrenceForm::kChunk, 2};
  RecurrenceOptions rec{GateKind::kScalar, -1, RecurrenceForm::kRecurrent, 2};
  RecurrenceResult a = delta_rule(q, k, v, g, beta, Tensor(), chunk);
  RecurrenceResult b = delta_rule(q, k, v, g, beta, Tensor(), rec);
  std::vector<double> x = a.o.to_vector<double>(), y = b.o.to_vector<double>();
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], 1e-12) << i;
}

TEST(MixerBackend, CpuRecurrenceRefusesMixedDtypes) {
  Tensor q = Tensor::zeros({1, 2, 1, 3}, DType::kF64);
  Tensor v = Tensor::zeros({1, 2, 1, 4}, DType::kF32);
  Tensor beta = Tensor::zeros({1, 2, 1}, DType::kF64);
  RecurrenceOptions opt{GateKind::kNone, -1, RecurrenceForm::kRecurrent, 64};
  try {
    delta_rule(q, q, v, Tensor(), beta, Tensor(), opt);
    FAIL() << "mixed dtypes ran on the CPU";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("mixed dtypes"), std::string::npos) << e.what();
  }
}

}  // namespace
