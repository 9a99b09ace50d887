// bench-infer --breakdown's host side (inference/engine/step_breakdown.h): the bytes per part add
// up to what the floor counts (active_weight_bytes + cache bytes + logits), each part reads
// what its layers hold (no KDA part in the all-MLA twin, experts scale with the distinct count),
// and the table's GB/s and floor columns are the bytes over the time and over the bandwidth.
#include <gtest/gtest.h>

#include <string>

#include "inference/engine/cache_layout.h"
#include "inference/engine/step_breakdown.h"
#include "inference/engine/weight_layout.h"
#include "inference/sim_args.h"

namespace kimi::inference::engine {
namespace {

double at(const StepPartMs& v, StepPart p) { return v[static_cast<int>(p)]; }

TEST(StepBreakdown, PartBytesAddUpToTheFloorsBytes) {
  const models::KimiLinearConfig c = resolve_model("", "kimi-linear-48b");
  for (bool all_mla : {false, true}) {
    const models::KimiLinearConfig m = all_mla ? models::all_mla_twin(c) : c;
    const WeightLayout l = make_weight_layout(m);
    for (int64_t B : {1, 9, 640}) {
      const int64_t ctx = 4096, distinct = 27 * 8 + B;  // any count: both sides take it
      const StepPartMs b = step_part_bytes(m, B, ctx, distinct);
      double sum = 0;
      for (double x : b) sum += x;
      const double logits = static_cast<double>(B * m.vocab_size * 4);
      const double want = static_cast<double>(active_weight_bytes(l, distinct, B)) +
                          static_cast<double>(B * make_cache_layout(m, 1, ctx + 1).step_bytes(ctx));
      // Apart from rounding: the fp32 A_log / dt_bias counted as bf16, one latent row.
      EXPECT_NEAR(sum - logits, want, 1e-3 * want)
          << (all_mla ? "all-MLA" : "hybrid") << " B " << B;
    }
    const StepPartMs one = step_part_bytes(m, 1, 4096, 100), two = step_part_bytes(m, 1, 4096, 200);
    EXPECT_DOUBLE_EQ(at(two, StepPart::kExperts), 2 * at(one, StepPart::kExperts));
    EXPECT_EQ(at(one, StepPart::kKdaProj) == 0, all_mla);
    EXPECT_EQ(at(one, StepPart::kKdaUpdate) == 0, all_mla);
    EXPECT_GT(at(one, StepPart::kMlaAttend), 0);
    // The context moves only the attention's bytes.
    const StepPartMs longer = step_part_bytes(m, 1, 8192, 100);
    for (int i = 0; i < kStepParts; ++i)
      if (static_cast<StepPart>(i) != StepPart::kMlaAttend) EXPECT_EQ(longer[i], one[i]) << i;
    EXPECT_GT(at(longer, StepPart::kMlaAttend), at(one, StepPart::kMlaAttend));
  }
}

TEST(StepBreakdown, TableShowsRatesFloorsAndTheSum) {
  StepPartMs ms{}, bytes{};
  ms[static_cast<int>(StepPart::kHead)] = 2.0;  // 4 GB in 2 ms: 2000 GB/s; floor 1 ms at 4 TB/s
  bytes[static_cast<int>(StepPart::kHead)] = 4e9;
  ms[static_cast<int>(StepPart::kNorm)] = 0.5;
  const std::string t = breakdown_table(ms, bytes, 2.0, 4e12);
  EXPECT_NE(t.find("lm_head"), std::string::npos) << t;
  EXPECT_NE(t.find("2000"), std::string::npos) << t;
  EXPECT_NE(t.find("1.0000"), std::string::npos) << t;  // the floor
  EXPECT_NE(t.find("norms"), std::string::npos) << t;
  EXPECT_EQ(t.find("kda.update"), std::string::npos) << t;  // no time, no bytes: not listed
  EXPECT_NE(t.find("sum (un-graphed)"), std::string::npos) << t;
  EXPECT_NE(t.find("2.500"), std::string::npos) << t;  // the sum of the parts
  EXPECT_NE(t.find("1.25x"), std::string::npos) << t;  // over the graphed step
  for (int i = 0; i < kStepParts; ++i)
    EXPECT_STRNE(step_part_name(static_cast<StepPart>(i)), "?") << i;
}

}  // namespace
}  // namespace kimi::inference::engine
