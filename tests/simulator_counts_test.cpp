// The inference simulator's counts (suite Simulator): cache bytes against models::CacheSizes
// (what model-info prints), the all-MLA twin, hand-counted decode and prefill bytes and FLOPs of
// a made-up tiny hybrid, and the routed experts a batch touches.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "inference/simulator.h"
#include "tests/simulator_fixture.h"
#include "tests/user_error_message.h"

namespace kimi::inference {
namespace {

using kimi::test_util::message_of;
using models::KimiLinearConfig;
using simulator_test::by_kind;
using simulator_test::tiny;

TEST(Simulator, CacheBytesEqualCacheSizesForBothModels) {
  for (const KimiLinearConfig& c : {models::kimi_linear_48b(), tiny()}) {
    const models::CacheSizes s = models::cache_sizes(c, 4, 2);  // model-info's reference dtypes
    for (int64_t n :
         {int64_t{1}, int64_t{4096}, int64_t{12345}, int64_t{131072}, int64_t{1} << 20}) {
      const Prediction h = predict(c, ModelKind::kHybrid, gpu_profile("h200"), n, 1, {});
      const Prediction m = predict(c, ModelKind::kAllMla, gpu_profile("h200"), n, 1, {});
      EXPECT_EQ(h.cache_bytes_per_seq, static_cast<double>(s.hybrid(n))) << n;
      EXPECT_EQ(m.cache_bytes_per_seq, static_cast<double>(s.all_mla(n))) << n;
      EXPECT_EQ(models::cache_sizes(models::all_mla_twin(c), 4, 2).hybrid(n), s.all_mla(n));
    }
  }
  // model-info's figures at 1M: 7.92 GiB against 30.38 GiB.
  const KimiLinearConfig c = models::kimi_linear_48b();
  EXPECT_NEAR(cache_bytes_per_seq(c, 1 << 20, {}) / double(1 << 30), 7.917, 0.001);
  EXPECT_NEAR(cache_bytes_per_seq(models::all_mla_twin(c), 1 << 20, {}) / double(1 << 30), 30.375,
              1e-9);
}

TEST(Simulator, AllMlaTwinHasEveryLayerMla) {
  const KimiLinearConfig t = models::all_mla_twin(models::kimi_linear_48b());
  EXPECT_EQ(t.full_attn_layers.size(), 27u);
  EXPECT_TRUE(t.kda_layers.empty());
  for (int64_t i = 0; i < 27; ++i) EXPECT_TRUE(t.is_mla(i));
  KimiLinearConfig no_mla = tiny();
  no_mla.kv_lora_rank = 0;
  EXPECT_NE(message_of([&] { models::all_mla_twin(no_mla); }).find("kv_lora_rank"),
            std::string::npos);
}

TEST(Simulator, HandCountedDecodeBytesAndFlopsOfATinyHybrid) {
  const auto m = by_kind(decode_step(tiny(), 1, 5));
  ASSERT_EQ(m.size(), 5u);
  // KDA (d 4, 1 head of 2, conv 2). Matmuls: q,k,v,o 4x2 each = 32; f_a 4x2, f_b 2x2, g_a 4x2,
  // g_b 2x2 = 24; b_proj 4x1 = 4: 60. Other: convs 3x2x2 = 12, A_log 1, dt_bias 2, o_norm 2,
  // input norm 4: 21. 81 params = 162 B. Cache: state 1x2x2 fp32 = 16 B and conv tails
  // 3x(2-1)x2 fp32 = 24 B, read and written: 80 B. FLOPs: 2x60 = 120 in matmuls; recurrence
  // 7x2x2 = 28 plus conv 2x2 taps x 6 channels = 24: 52.
  const Work& kda = m.at("kda").work;
  EXPECT_EQ(kda.weight_bytes, 162);
  EXPECT_EQ(kda.cache_bytes, 80);
  EXPECT_EQ(kda.gemm_flops, 120);
  EXPECT_EQ(kda.recur_flops, 52);
  // MLA (1 head, latent 2, nope 2, rope 1, v 2). q 4x3 = 12, kv_a 4x3 = 12, kv_b 2x4 = 8,
  // o 2x4 = 8: 40 matmul; kv_a_layernorm 2 + input norm 4: 46 params = 92 B. Cache 3 bf16 = 6 B
  // a token: 6 cached + the new one read (36 B), the new one written (6 B). Scores over the 3-d
  // key and values over the 2-d latent for 6 positions: 2 x 6 x (3 + 2) = 60 FLOPs.
  const Work& mla = m.at("mla").work;
  EXPECT_EQ(mla.weight_bytes, 92);
  EXPECT_EQ(mla.cache_bytes, 42);
  EXPECT_EQ(mla.gemm_flops, 80);
  EXPECT_EQ(mla.attn_flops, 60);
  // MoE: router 4x4 = 16, bias 4, norm 4, shared + 2 routed experts of 3x4x3 = 36: 132 = 264 B;
  // FLOPs 2 x (16 + 3 x 36) = 248. Dense: 3x4x6 = 72 + norm 4 = 152 B, 144 FLOPs.
  EXPECT_EQ(m.at("moe_ffn").work.weight_bytes, 264);
  EXPECT_EQ(m.at("moe_ffn").work.gemm_flops, 248);
  EXPECT_EQ(m.at("dense_ffn").work.weight_bytes, 152);
  EXPECT_EQ(m.at("dense_ffn").work.gemm_flops, 144);
  // Head 10x4 + final norm 4 = 88 B; embedding row 8 B + fp32 logits 40 B; 80 FLOPs.
  const Work& head = m.at("embed_head").work;
  EXPECT_EQ(head.weight_bytes, 88);
  EXPECT_EQ(head.other_bytes, 48);
  EXPECT_EQ(head.gemm_flops, 80);
  const Work sum = total(decode_step(tiny(), 1, 5));
  EXPECT_EQ(sum.bytes(), 928);
  EXPECT_EQ(sum.flops(), 784);
  // At batch 1 the weights read are the active parameters less the embedding table.
  const models::ParameterCount p = models::parameter_count(tiny());
  EXPECT_EQ(p.total, 491);
  EXPECT_EQ(sum.weight_bytes, 2.0 * (p.active - p.embedding));
  EXPECT_EQ(weights_bytes(tiny(), {}), 982);
  // A batch of 3: per-sequence terms triple; the MoE reads 4 (1 - 1/8) = 3.5 routed experts.
  const auto b3 = by_kind(decode_step(tiny(), 3, 5));
  EXPECT_EQ(b3.at("kda").work.cache_bytes, 240);
  EXPECT_EQ(b3.at("kda").work.weight_bytes, 162);
  EXPECT_DOUBLE_EQ(b3.at("moe_ffn").work.weight_bytes, 2 * (24 + 4.5 * 36));
}

TEST(Simulator, HandCountedPrefillChunkOfATinyHybrid) {
  // 2 tokens after 3 cached, the prompt's last chunk.
  const auto m = by_kind(prefill_chunk(tiny(), 3, 2, true));
  // MLA: 2 x 40 x 2 = 160 in projections, plus kv_b over the 3 cached latents 2 x 8 x 3 = 48;
  // attention 2 x (3 + 2) FLOPs per pair over 2x3 + 3 pairs = 90; cache 3 read + 2 written.
  EXPECT_EQ(m.at("mla").work.gemm_flops, 208);
  EXPECT_EQ(m.at("mla").work.attn_flops, 90);
  EXPECT_EQ(m.at("mla").work.cache_bytes, 30);
  // KDA: eq. 13 per token (6x2x2 + 3x64x2 + 64x64 = 4504) + conv 24, for 2 tokens; the state
  // and tails read and written once.
  EXPECT_EQ(m.at("kda").work.recur_flops, 9056);
  EXPECT_EQ(m.at("kda").work.cache_bytes, 80);
  // 2 tokens touch 4 (1 - (1/2)^2) = 3 routed experts.
  EXPECT_DOUBLE_EQ(m.at("moe_ffn").work.weight_bytes, 2 * (24 + 4 * 36));
  EXPECT_EQ(m.at("embed_head").work.weight_bytes, 88);
  EXPECT_EQ(by_kind(prefill_chunk(tiny(), 0, 3, false)).at("embed_head").work.weight_bytes, 0);
}

TEST(Simulator, ExpertsTouched) {
  const KimiLinearConfig c = models::kimi_linear_48b();
  EXPECT_EQ(experts_touched(c, 1), 8);
  EXPECT_NEAR(experts_touched(c, 2), 256 * (1 - std::pow(248.0 / 256, 2)), 1e-9);
  EXPECT_NEAR(experts_touched(c, 100000), 256, 1e-9);
  EXPECT_EQ(experts_touched(tiny(), 2), 3);
}

}  // namespace
}  // namespace kimi::inference
