// simulate --model engine: the engine model's arithmetic, its h200 profile against the rows it
// was calibrated on, and its refusals.
#include "inference/engine_model.h"

#include <gtest/gtest.h>

#include <functional>
#include <numeric>
#include <optional>

#include "core/tensor/error.h"
#include "inference/engine/mla_splits.h"
#include "inference/layer_costs.h"
#include "inference/report.h"
#include "inference/simulator.h"
#include "tests/user_error_message.h"

namespace kimi::inference {
namespace {

using engine::StepPart;
constexpr int at(StepPart p) { return static_cast<int>(p); }

using kimi::test_util::message_of;

TEST(EngineModel, PartTakesTheLargerTimePlusLatency) {
  EXPECT_DOUBLE_EQ(part_seconds(1e9, 1e12, 2e12, 1e15, 1e-6), 2e-3 + 1e-6);  // compute-bound
  EXPECT_DOUBLE_EQ(part_seconds(3e9, 1e12, 2e12, 1e15, 1e-6), 3e-3 + 1e-6);  // memory-bound
  EXPECT_DOUBLE_EQ(part_seconds(1e9, 1e12, 5e20, 0, 0), 1e-3);  // rate 0: no compute bound
}

TEST(EngineModel, StepIsTheSumOfItsPartsLessTheGraphGain) {
  const EngineProfile e = engine_profile("h200");
  const models::KimiLinearConfig h = models::kimi_linear_48b();
  const models::KimiLinearConfig m = models::all_mla_twin(h);
  for (int64_t b : {1, 5, 8, 9, 64, 639})
    for (int64_t n : {int64_t{4096}, int64_t{1} << 20}) {
      const EngineStep s = engine_step(h, e, b, n);
      const double sum = std::accumulate(s.seconds.begin(), s.seconds.end(), 0.0);
      EXPECT_DOUBLE_EQ(s.graph_gain_s, 27 * e.graph_gain_layer_s);
      EXPECT_DOUBLE_EQ(s.total_s(), sum - s.graph_gain_s);
      for (int i = 0; i < engine::kStepParts; ++i) EXPECT_GT(s.seconds[i], 0) << i;
      const EngineStep t = engine_step(m, e, b, n);
      EXPECT_EQ(t.seconds[at(StepPart::kKdaProj)], 0);
      EXPECT_EQ(t.seconds[at(StepPart::kKdaUpdate)], 0);
      EXPECT_GT(t.seconds[at(StepPart::kMlaAttend)], s.seconds[at(StepPart::kMlaAttend)]);
    }
}

TEST(EngineModel, GemvUpToEightTensorCoresAbove) {
  const EngineProfile e = engine_profile("h200");
  const models::KimiLinearConfig h = models::kimi_linear_48b();
  const int o = at(StepPart::kKdaOut);
  const double w = 20.0 * 2 * 2304 * 4096;  // 20 KDA o_proj matrices, 32 heads x 128, bf16
  const EngineStep b1 = engine_step(h, e, 1, 4096), b8 = engine_step(h, e, 8, 4096);
  EXPECT_NEAR(b1.seconds[o], w / e.gemv_bw + 20 * e.gemv_kernel_s, 1e-12);
  EXPECT_NEAR(b8.seconds[o], (1 + 7 * e.gemv_alpha) * b1.seconds[o], 1e-12);
  const EngineStep b9 = engine_step(h, e, 9, 4096), b639 = engine_step(h, e, 639, 4096);
  EXPECT_NEAR(b9.seconds[o], w / e.tc_bw + 20 * e.tc_layer_s[o], 1e-12);
  EXPECT_NEAR(b639.seconds[o], 639 * w / e.tc_rate[o] + 20 * e.tc_layer_s[o], 1e-12);
  EXPECT_EQ(attend_splits(e, 1, 1 << 20), 132);  // one split per SM up to 4 sequences
  EXPECT_EQ(attend_splits(e, 1, 4096), 129);     // ceil(4097 / 32)
  EXPECT_EQ(attend_splits(e, 4, 1 << 20), 33);
  EXPECT_EQ(attend_splits(e, 5, 1 << 20), 53);  // two per SM above: ceil(264 / 5)
  EXPECT_EQ(attend_splits(e, 64, 32768), 5);
}

// The split rule is engine/mla_splits.h's, shared with the engine; KIMI_ENGINE_MLA_SPLITS_PER_SM
// moves both (the profile reads it as the engine does) and a bad value is one line naming it.
TEST(EngineModel, SplitsFollowTheEnginesRuleAndItsKnob) {
  EXPECT_EQ(engine::mla_splits_per_sm(1, 0), 1);
  EXPECT_EQ(engine::mla_splits_per_sm(4, 0), 1);
  EXPECT_EQ(engine::mla_splits_per_sm(5, 0), 2);
  EXPECT_EQ(engine::mla_splits_per_sm(1, 3), 3);
  EXPECT_EQ(engine::mla_max_splits_per_sm(0), 2);
  EXPECT_EQ(engine::mla_attend_splits(132, 1, 1, 100), 4);  // ceil(100 / 32): the length caps
  EXPECT_EQ(engine::mla_attend_splits(132, 8, 1, 1 << 20), 1024);
  setenv("KIMI_ENGINE_MLA_SPLITS_PER_SM", "2", 1);
  const EngineProfile two = engine_profile("h200");
  EXPECT_EQ(attend_splits(two, 1, 1 << 20), 264);
  for (const char* bad : {"0", "9", "two", "12"}) {
    setenv("KIMI_ENGINE_MLA_SPLITS_PER_SM", bad, 1);
    const std::string msg = message_of([] { engine_profile("h200"); });
    EXPECT_NE(msg.find("KIMI_ENGINE_MLA_SPLITS_PER_SM=" + std::string(bad)), std::string::npos)
        << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  unsetenv("KIMI_ENGINE_MLA_SPLITS_PER_SM");
  EXPECT_EQ(engine::mla_splits_per_sm_from_env(), 0);
}

// The calibration rows (results/bench_infer_h200, hybrid at 4K): the model was fitted on their
// parts, so each part comes back within 15% and the TPOT within 5%; a profile number typed
// wrong fails here.
TEST(EngineModel, ReproducesItsCalibrationRows) {
  struct Row {
    int64_t batch;
    double tpot_ms;
    engine::StepPartMs ms;  // bench_breakdown.csv, in StepPart order
  };
  const Row rows[] = {
      {1,
       6.0207,
       {0.0103, 0.5293, 0.6843, 0.7720, 0.2828, 0.1233, 0.8614, 0.1022, 0.9054, 1.9337, 0.5544,
        0.2629}},
      {8,
       18.2888,
       {0.0129, 0.5116, 1.6664, 0.7635, 0.8467, 0.3496, 0.8168, 0.3003, 2.1116, 9.5658, 1.5137,
        0.7970}},
      {64,
       35.6668,
       {0.0146, 0.4997, 1.5134, 4.4341, 0.288, 0.100, 2.581, 0.092, 2.209, 24.200, 0.549, 0.199}},
      {639,
       110.1871,
       {0.031, 0.555, 10.741, 40.077, 0.520, 0.246, 18.940, 0.161, 5.584, 32.926, 0.962, 0.666}},
  };
  EngineProfile e = engine_profile("h200");
  e.forced_splits_per_sm = 2;  // the rows were measured before the B <= 4 rule (2 per SM)
  const models::KimiLinearConfig h = models::kimi_linear_48b();
  for (const Row& r : rows) {
    const EngineStep s = engine_step(h, e, r.batch, 4096);
    EXPECT_NEAR(1e3 * s.total_s(), r.tpot_ms, 0.05 * r.tpot_ms) << "B=" << r.batch;
    for (int i = 0; i < engine::kStepParts; ++i) {
      if (i == at(StepPart::kEmbed)) continue;  // 10-30 us: noise in the measurement
      EXPECT_NEAR(1e3 * s.seconds[i], r.ms[i], 0.15 * r.ms[i])
          << "B=" << r.batch << " " << engine::step_part_name(static_cast<StepPart>(i));
    }
  }
}

TEST(EngineModel, SelectedByOptionAndRefusedWithoutAProfile) {
  const models::KimiLinearConfig h = models::kimi_linear_48b();
  const GpuProfile g = gpu_profile("h200");
  SimOptions o;
  const double roof = predict(h, ModelKind::kHybrid, g, 4096, 1, o).tpot_ms;
  o.engine = engine_profile("h200");
  const Prediction p = predict(h, ModelKind::kHybrid, g, 4096, 1, o);
  EXPECT_DOUBLE_EQ(p.tpot_ms, 1e3 * engine_step(h, *o.engine, 1, 4096).total_s());
  EXPECT_GT(p.tpot_ms, 2 * roof);  // the engine is 1.6-7.9x above its floor
  EXPECT_EQ(parse_time_model("roofline"), TimeModel::kRoofline);
  EXPECT_EQ(parse_time_model("engine"), TimeModel::kEngine);
  for (const auto& [msg, names] :
       {std::pair{message_of([] { parse_time_model("analytic"); }),
                  std::string("--model analytic")},
        std::pair{message_of([] { parse_time_model("analytic"); }),
                  std::string("roofline, engine")},
        std::pair{message_of([] { engine_profile("h100"); }), std::string("'h100'")},
        std::pair{message_of([] { engine_profile("h100"); }), std::string("--model roofline")}}) {
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_NE(msg.find(names), std::string::npos) << msg;
  }
}

TEST(EngineModel, FitSummaryCountsRowsWithinTheToleranceAndNamesTheOthers) {
  auto row = [](int64_t batch, double predicted, std::optional<double> measured) {
    Prediction p;
    p.batch = batch, p.context = 4096, p.tpot_ms = predicted;
    if (measured) p.measured = Measured{ModelKind::kHybrid, 4096, batch, {}, measured, {}};
    return p;
  };
  EXPECT_EQ(fit_summary({row(1, 1.0, std::nullopt)}, 0.15), "");
  const std::string s = fit_summary(
      {row(1, 1.10, 1.0), row(8, 0.80, 1.0), row(64, 2.0, std::nullopt), row(9, 0.86, 1.0)}, 0.15);
  EXPECT_EQ(s, "2 of 3 measured TPOTs within 15%; outside:\n  hybrid 4096 B=8: -20.0%\n") << s;
  EXPECT_EQ(fit_summary({row(1, 1.0, 1.0)}, 0.15), "1 of 1 measured TPOTs within 15%\n");
}

}  // namespace
}  // namespace kimi::inference
