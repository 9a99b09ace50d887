// The multi-GPU decode prediction (suite ParallelCosts): one GPU is the single-GPU simulator
// exactly; with N GPUs each layer type splits as parallel_costs.h says (KDA state by heads, MLA
// latent whole, routed experts by N, replicated norms and routers), the collectives follow the
// ring formulas, the 48B gains batch room from the split, and bad GPU counts are one line.
#include "inference/parallel_costs.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>

#include "core/tensor/error.h"
#include "tests/user_error_message.h"

namespace kimi::inference {
namespace {

using models::KimiLinearConfig;

std::map<std::string, Work> by_kind(const std::vector<LayerCost>& v) {
  std::map<std::string, Work> m;
  for (const LayerCost& l : v) m[l.kind] = l.work;
  return m;
}

using kimi::test_util::message_of;

TEST(ParallelCosts, OneGpuIsTheSingleGpuModel) {
  const KimiLinearConfig c = models::kimi_linear_48b();
  const Dtypes dt;
  EXPECT_DOUBLE_EQ(resident_weight_bytes(c, dt, 1), weights_bytes(c, dt));
  EXPECT_EQ(cache_bytes_per_seq_per_gpu(c, 131072, dt, 1), cache_bytes_per_seq(c, 131072, dt));
  const GpuProfile g = gpu_profile("h200");
  EXPECT_EQ(max_batch_per_host(c, g, 131072, dt, 1), max_batch(c, g, 131072, dt));
  SimOptions o;
  const Prediction one = predict(c, ModelKind::kHybrid, g, 131072, 8, o);
  const ParallelPrediction p =
      predict_parallel(c, ModelKind::kHybrid, g, nvlink4(), 131072, 8, 1, dt);
  EXPECT_DOUBLE_EQ(p.tpot_ms, one.tpot_ms);
  EXPECT_EQ(p.comm_ms, 0);
}

TEST(ParallelCosts, EachLayerTypeSplitsAsDocumented) {
  const KimiLinearConfig c = models::kimi_linear_48b();
  const auto one = by_kind(decode_step(c, 4, 65536, {}, 1));
  const auto four = by_kind(decode_step(c, 4, 65536, {}, 4));
  // KDA: the state splits with the heads; FLOPs of the recurrence too.
  EXPECT_DOUBLE_EQ(four.at("kda").cache_bytes, one.at("kda").cache_bytes / 4);
  EXPECT_DOUBLE_EQ(four.at("kda").recur_flops, one.at("kda").recur_flops / 4);
  // Weights split except the replicated low-rank factors: between a quarter and the whole.
  EXPECT_GT(four.at("kda").weight_bytes, one.at("kda").weight_bytes / 4);
  EXPECT_LT(four.at("kda").weight_bytes, one.at("kda").weight_bytes / 3);
  // MLA: every GPU reads the whole latent; the attention FLOPs split with the heads.
  EXPECT_DOUBLE_EQ(four.at("mla").cache_bytes, one.at("mla").cache_bytes);
  EXPECT_DOUBLE_EQ(four.at("mla").attn_flops, one.at("mla").attn_flops / 4);
  EXPECT_GT(four.at("mla").weight_bytes, one.at("mla").weight_bytes / 4);
  // MoE: the experts split, the router (E x d) stays whole.
  const LayerParams p = layer_params(c);
  const double router = 2.0 * (p.router + p.router_bias + p.ffn_norm);
  EXPECT_NEAR(four.at("moe_ffn").weight_bytes - router,
              (one.at("moe_ffn").weight_bytes - router) / 4, 1.0);
  EXPECT_DOUBLE_EQ(four.at("dense_ffn").gemm_flops, one.at("dense_ffn").gemm_flops / 4);
  EXPECT_DOUBLE_EQ(four.at("embed_head").gemm_flops, one.at("embed_head").gemm_flops / 4);
}

TEST(ParallelCosts, CollectivesFollowTheRingFormulas) {
  Interconnect l;
  l.bus_bandwidth = 100e9, l.latency_s = 5e-6;
  EXPECT_EQ(all_reduce_seconds(1e9, 1, l), 0);
  EXPECT_DOUBLE_EQ(all_reduce_seconds(1e9, 4, l), 5e-6 + 2.0 * 0.75 * 1e9 / 100e9);
  EXPECT_DOUBLE_EQ(all_gather_seconds(1e9, 4, l), 5e-6 + 0.75 * 1e9 / 100e9);
  // A step's collectives: two all-reduces of the bf16 hidden state per layer, one gather of logits.
  const KimiLinearConfig c = models::kimi_linear_48b();
  const ParallelPrediction p =
      predict_parallel(c, ModelKind::kHybrid, gpu_profile("h200"), l, 4096, 2, 4, Dtypes{});
  const double hidden = 2.0 * c.hidden_size * 2, logits = 2.0 * c.vocab_size * 4;
  EXPECT_NEAR(p.comm_ms,
              1e3 * (2.0 * c.num_hidden_layers * all_reduce_seconds(hidden, 4, l) +
                     all_gather_seconds(logits, 4, l)),
              1e-12);
  EXPECT_DOUBLE_EQ(p.tpot_ms, p.compute_ms + p.comm_ms);
}

TEST(ParallelCosts, SplittingFreesRoomForTheHybridsCachesNotAllMlas) {
  const KimiLinearConfig c = models::kimi_linear_48b();
  const GpuProfile g = gpu_profile("h200");
  const Dtypes dt;
  // Weights per GPU shrink almost by the GPU count (the embedding table and routers stay whole).
  EXPECT_LT(resident_weight_bytes(c, dt, 8), weights_bytes(c, dt) / 7);
  EXPECT_GT(resident_weight_bytes(c, dt, 8), weights_bytes(c, dt) / 8);
  // At 4K the hybrid's KDA state is most of its cache and splits; all-MLA's cache stays whole.
  const KimiLinearConfig mla = models::all_mla_twin(c);
  EXPECT_LT(cache_bytes_per_seq_per_gpu(c, 4096, dt, 8), cache_bytes_per_seq(c, 4096, dt) / 2);
  EXPECT_GT(max_batch_per_host(c, g, 1 << 20, dt, 8), max_batch_per_host(c, g, 1 << 20, dt, 2));
  EXPECT_EQ(cache_bytes_per_seq_per_gpu(mla, 1 << 20, dt, 8),
            cache_bytes_per_seq(mla, 1 << 20, dt));
  // More GPUs: a shorter step at batch 1 on the 48B (the weights dominate it).
  const auto rows = simulate_parallel(c, g, nvlink4(), {1, 2, 4, 8}, {131072}, {{1, false}}, dt);
  ASSERT_EQ(rows.size(), 8u);  // 2 models x 4 GPU counts
  for (size_t i = 1; i < 4; ++i) EXPECT_LT(rows[i].tpot_ms, rows[i - 1].tpot_ms);
  EXPECT_NE(parallel_table(rows).find("vs 1"), std::string::npos);
  const std::string csv = parallel_csv(rows);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 9);  // the header and 8 rows
}

TEST(ParallelCosts, GpuCountsThatDoNotSplitTheHeadsAreOneLine) {
  const KimiLinearConfig c = models::kimi_linear_48b();  // 32 heads of each kind, 256 experts
  EXPECT_NO_THROW(check_gpu_count(c, 8));
  for (int n : {0, 3, 64}) {
    const std::string m = message_of([&] { check_gpu_count(c, n); });
    EXPECT_NE(m.find("--gpus " + std::to_string(n)), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace kimi::inference
