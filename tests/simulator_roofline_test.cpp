// The inference simulator's times and batches (suite Simulator): the roofline arithmetic, the
// largest batch, monotonicity against context and batch, the speedup paragraph, the cache and
// throughput ratios at 1M, and the --bw / --tflops / --mem-gib / --launch-us overrides.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "inference/report.h"
#include "inference/simulator.h"
#include "tests/simulator_fixture.h"
#include "tests/user_error_message.h"

namespace kimi::inference {
namespace {

using kimi::test_util::message_of;
using models::KimiLinearConfig;
using simulator_test::round_profile;
using simulator_test::tiny;

TEST(Simulator, RooflineTakesTheLargerTimePlusLaunch) {
  const GpuProfile g = round_profile();
  Work mem;
  mem.weight_bytes = 2e9;  // 2 ms at 1 TB/s
  mem.gemm_flops = 1e12;   // 1 ms at 1 PFLOP/s
  EXPECT_DOUBLE_EQ(layer_seconds(mem, g, Phase::kDecode), 2e-3 + 1e-6);
  Work comp;
  comp.cache_bytes = 1e9;   // 1 ms
  comp.attn_flops = 1e12;   // 2 ms
  comp.recur_flops = 1e11;  // 1 ms at fp32 (decode), 10 ms at the chunk rate (prefill)
  EXPECT_DOUBLE_EQ(layer_seconds(comp, g, Phase::kDecode), 3e-3 + 1e-6);
  EXPECT_DOUBLE_EQ(layer_seconds(comp, g, Phase::kPrefill), 12e-3 + 1e-6);
  // A step: each layer type times its count.
  EXPECT_DOUBLE_EQ(step_seconds({{"a", 3, mem}, {"b", 2, comp}}, g, Phase::kDecode),
                   3 * (2e-3 + 1e-6) + 2 * (3e-3 + 1e-6));
}

TEST(Simulator, LargestBatchArithmetic) {
  const KimiLinearConfig c = tiny();
  GpuProfile g = round_profile();
  const double cache = static_cast<double>(cache_bytes_per_seq(c, 100, {}));  // 40x1 + 600
  EXPECT_EQ(cache, 2 * 20 + 6 * 100);
  // Decode workspace: fp32 logits 10 x 4 + 4 fp32 vectors of the widest activation, the MoE's
  // (2 routed + 1 shared) x 3 = 9: 40 + 144.
  EXPECT_EQ(workspace_bytes_per_seq(c, {}), 184);
  const double per_seq = cache + 184;
  g.reserve_bytes = 1000;
  g.memory_bytes = 982 + 1000 + 3.5 * per_seq;
  EXPECT_EQ(max_batch(c, g, 100, {}), 3);
  g.memory_bytes = 982 + 1000 + 4 * per_seq;
  EXPECT_EQ(max_batch(c, g, 100, {}), 4);
  g.memory_bytes = 982 + 1000 + 4 * cache;  // the caches alone would fit 4
  EXPECT_EQ(max_batch(c, g, 100, {}), 3);
  g.memory_bytes = 900;  // not even the weights
  EXPECT_EQ(max_batch(c, g, 100, {}), 0);
  EXPECT_FALSE(predict(c, ModelKind::kHybrid, g, 100, 1, {}).fits);
  // The 48B on the H200 at 1M: 139 GiB usable - 2 GiB workspace - 98.25 GB of weights = 45.5
  // GiB free; 7.92 GiB per hybrid sequence -> 5, 30.38 GiB per all-MLA sequence -> 1. At 4K a
  // hybrid sequence is 77,922,304 B of cache + 950,272 B of workspace -> 619.
  const KimiLinearConfig big = models::kimi_linear_48b();
  const GpuProfile h200 = gpu_profile("h200");
  EXPECT_EQ(max_batch(big, h200, 1 << 20, {}), 5);
  EXPECT_EQ(max_batch(models::all_mla_twin(big), h200, 1 << 20, {}), 1);
  EXPECT_EQ(cache_bytes_per_seq(big, 4096, {}) + workspace_bytes_per_seq(big, {}), 78872576);
  EXPECT_EQ(max_batch(big, h200, 4096, {}), 619);
  // --mem-gib: 4 GiB more memory is 4 GiB more cache.
  GpuProfile more = h200;
  apply_overrides(more, {.mem_gib = 143});
  EXPECT_EQ(max_batch(big, more, 1 << 20, {}), 6);
  // The H100 cannot hold the bf16 weights.
  EXPECT_EQ(max_batch(big, gpu_profile("h100"), 4096, {}), 0);
  // "max" rows use that batch; a batch beyond it is predicted but flagged.
  const auto rows = simulate(big, h200, {1 << 20}, {{0, true}, {6, false}}, {}, {});
  ASSERT_EQ(rows.size(), 4u);  // hybrid 5, 6; all-mla 1, 6
  EXPECT_EQ(rows[0].batch, 5);
  EXPECT_TRUE(rows[0].fits);
  EXPECT_EQ(rows[1].batch, 6);
  EXPECT_FALSE(rows[1].fits);
  EXPECT_EQ(rows[2].model, ModelKind::kAllMla);
  EXPECT_EQ(rows[2].batch, 1);
}

TEST(Simulator, MonotoneInContextAndBatch) {
  const KimiLinearConfig c = models::kimi_linear_48b();
  const GpuProfile g = gpu_profile("h200");
  for (ModelKind m : {ModelKind::kHybrid, ModelKind::kAllMla}) {
    Prediction prev;
    for (int64_t n = 1024; n <= (1 << 20); n *= 2) {
      const Prediction p = predict(c, m, g, n, 1, {});
      if (n > 1024) {
        EXPECT_GT(p.cache_bytes_per_seq, prev.cache_bytes_per_seq);
        EXPECT_GT(p.tpot_ms, prev.tpot_ms);
        EXPECT_LT(p.tokens_per_s, prev.tokens_per_s);
        EXPECT_GT(p.prefill_ms, prev.prefill_ms);
        EXPECT_LE(p.max_batch, prev.max_batch);
      }
      EXPECT_GE(p.tpot_ms, p.mem_floor_ms);
      const Prediction p8 = predict(c, m, g, n, 8, {});
      EXPECT_GT(p8.tpot_ms, p.tpot_ms);
      EXPECT_GT(p8.tokens_per_s, p.tokens_per_s);
      prev = p;
    }
  }
  // At long contexts the hybrid wins at batch 1, and by more at the largest batches.
  const Prediction h1 = predict(c, ModelKind::kHybrid, g, 1 << 20, 1, {});
  const Prediction m1 = predict(c, ModelKind::kAllMla, g, 1 << 20, 1, {});
  const Prediction h5 = predict(c, ModelKind::kHybrid, g, 1 << 20, 5, {});
  EXPECT_GT(m1.tpot_ms / h1.tpot_ms, 2.0);
  EXPECT_GT(h5.tokens_per_s / m1.tokens_per_s, m1.tpot_ms / h1.tpot_ms);
}

TEST(Simulator, ExplainsTheSpeedupWithThisGpusNumbers) {
  const KimiLinearConfig c = models::kimi_linear_48b();
  const GpuProfile g = gpu_profile("h200");
  const std::string s = explain_speedup(c, g, 1 << 20, {});
  const Prediction h = predict(c, ModelKind::kHybrid, g, 1 << 20, 5, {});
  const Prediction m = predict(c, ModelKind::kAllMla, g, 1 << 20, 1, {});
  EXPECT_NE(s.find("1 all-MLA sequence(s) and 5 hybrid ones"), std::string::npos) << s;
  EXPECT_NE(s.find(fmt::format("{:.2f}x the decoding throughput", h.tokens_per_s / m.tokens_per_s)),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("6.3x"), std::string::npos);
  // On the H100 the weights do not fit, and the paragraph says so instead of a ratio.
  EXPECT_NE(explain_speedup(c, gpu_profile("h100"), 1 << 20, {}).find("needs both models to fit"),
            std::string::npos);
}

TEST(Simulator, HybridCacheIsAQuarterOfAllMlaAtOneMillion) {
  // 7 MLA layers x 1M x 1152 B against 27 of them, plus the 20 KDA layers' fixed fp32 state and
  // conv tails (2 MiB + 144 KiB each): 26.06%, which is the "<= 26%" to the whole
  // percent; the MLA layers alone give 7/27 = 25.93%. (A bf16 state would give 25.99%.)
  const KimiLinearConfig c = models::kimi_linear_48b();
  const double n = 1 << 20;
  const double h = 7 * n * 1152 + 20 * (2097152.0 + 147456), m = 27 * n * 1152;
  const auto r = throughput_ratios(c, gpu_profile("h200"), {4096, 1 << 20}, {});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_DOUBLE_EQ(r[1].cache_ratio, h / m);
  EXPECT_LE(std::round(100 * r[1].cache_ratio), 26);
  EXPECT_LT(r[1].cache_ratio, 0.2607);
  EXPECT_GT(r[0].cache_ratio, r[1].cache_ratio);  // the fixed state weighs more at 4K
  // The ratio table's throughputs are those of predict at each model's largest batch.
  EXPECT_EQ(r[1].batch_hybrid, 5);
  EXPECT_EQ(r[1].batch_mla, 1);
  const GpuProfile g = gpu_profile("h200");
  EXPECT_DOUBLE_EQ(r[1].ratio_max,
                   predict(c, ModelKind::kHybrid, g, 1 << 20, 5, {}).tokens_per_s /
                       predict(c, ModelKind::kAllMla, g, 1 << 20, 1, {}).tokens_per_s);
  EXPECT_GT(r[1].ratio_max, r[1].ratio_b1);
  EXPECT_NE(ratios_csv(r).find(fmt::format("1048576,{:.6f},5,1,", h / m)), std::string::npos);
  // Where a model does not fit (the H100), the throughput cells are empty, not zero.
  const auto none = throughput_ratios(c, gpu_profile("h100"), {4096}, {});
  EXPECT_EQ(none[0].ratio_max, 0);
  EXPECT_NE(ratios_csv(none).find(",0,0,,,,"), std::string::npos) << ratios_csv(none);
}

TEST(Simulator, FlagsReplaceTheProfilesCeilings) {
  GpuProfile g = gpu_profile("h200");
  EXPECT_EQ(g.bandwidth, 4.27e12);
  EXPECT_EQ(g.gemm_flops, 788e12);
  apply_overrides(g,
                  {.bw_tbs = 2, .tflops = 100, .mem_gib = 100, .reserve_gib = 0, .launch_us = 0});
  EXPECT_EQ(g.bandwidth, 2e12);
  EXPECT_EQ(g.gemm_flops, 100e12);
  EXPECT_EQ(g.memory_bytes, 100.0 * (1 << 30));
  EXPECT_EQ(g.reserve_bytes, 0);
  EXPECT_EQ(g.launch_s_per_layer, 0);
  // Each number keeps one source line, now naming the flag.
  int bw_lines = 0;
  for (const std::string& l : g.sources) bw_lines += l.rfind("bandwidth ", 0) == 0;
  EXPECT_EQ(bw_lines, 1);
  EXPECT_NE(g.sources.back().find("--launch-us"), std::string::npos);
  // Half the bandwidth doubles a memory-bound step (no launch cost now).
  const KimiLinearConfig c = models::kimi_linear_48b();
  GpuProfile full = g;
  apply_overrides(full, {.bw_tbs = 4});
  EXPECT_NEAR(predict(c, ModelKind::kAllMla, g, 1 << 20, 1, {}).tpot_ms,
              2 * predict(c, ModelKind::kAllMla, full, 1 << 20, 1, {}).tpot_ms, 1e-9);
  auto bad = [](const GpuOverrides& o) {
    GpuProfile p = gpu_profile("h200");
    return message_of([&] { apply_overrides(p, o); });
  };
  EXPECT_NE(bad({.bw_tbs = 0}).find("--bw 0"), std::string::npos);
  EXPECT_NE(bad({.tflops = -1}).find("--tflops"), std::string::npos);
  EXPECT_NE(bad({.mem_gib = std::nan("")}).find("--mem-gib"), std::string::npos);
  EXPECT_NE(bad({.launch_us = -2}).find("--launch-us"), std::string::npos);
}

}  // namespace
}  // namespace kimi::inference
