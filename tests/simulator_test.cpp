// The inference simulator (suite Simulator): cache bytes against models::CacheSizes (what
// model-info prints), hand-counted bytes and FLOPs of a made-up tiny hybrid, the roofline
// arithmetic, the largest batch, monotonicity against context and batch, the join of a
// measurement CSV with its relative errors, and one-line errors for bad inputs.
#include "inference/simulator.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "core/tensor/error.h"
#include "inference/engine_model.h"
#include "inference/measured_csv.h"
#include "inference/report.h"
#include "inference/sim_args.h"
#include "tests/user_error_message.h"

namespace kimi::inference {
namespace {

using models::KimiLinearConfig;

// Layer 0: KDA + dense SwiGLU; layer 1: MLA + MoE. Small enough to count every weight by hand.
KimiLinearConfig tiny() {
  KimiLinearConfig c;
  c.vocab_size = 10, c.hidden_size = 4, c.num_hidden_layers = 2;
  c.num_attention_heads = 1, c.intermediate_size = 6;
  c.kv_lora_rank = 2, c.q_lora_rank = 0, c.qk_nope_head_dim = 2, c.qk_rope_head_dim = 1;
  c.v_head_dim = 2;
  c.kda_head_dim = 2, c.kda_num_heads = 1, c.short_conv_kernel_size = 2;
  c.kda_layers = {1}, c.full_attn_layers = {2};
  c.num_experts = 4, c.num_experts_per_token = 2, c.num_shared_experts = 1;
  c.moe_intermediate_size = 3, c.first_k_dense_replace = 1;
  return c;
}

std::map<std::string, LayerCost> by_kind(const std::vector<LayerCost>& v) {
  std::map<std::string, LayerCost> m;
  for (const LayerCost& l : v) m[l.kind] = l;
  return m;
}

// A profile with round numbers, so times can be worked out by hand.
GpuProfile round_profile() {
  GpuProfile g;
  g.name = "test";
  g.memory_bytes = 1e12, g.reserve_bytes = 0, g.bandwidth = 1e12;
  g.gemm_flops = 1e15, g.attention_flops = 5e14, g.kda_chunk_flops = 1e13, g.fp32_flops = 1e14;
  g.launch_s_per_layer = 1e-6;
  return g;
}

using kimi::test_util::message_of;

// A UserError's message is one line and names what it should.
void one_line(const std::string& msg, const std::string& names) {
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_NE(msg.find(names), std::string::npos) << msg;
}

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

TEST(Simulator, MeasuredRowsAreJoinedWithTheirRelativeError) {
  const std::string csv =
      "# bench-infer, H200\n"
      "model,context,batch,prefill_ms,tpot_ms,tokens_per_s,cache_bytes_per_seq\n"
      "hybrid,4096,1,,2.5,400,1\n"
      "all-mla,131072,3,900,,,1\n";
  const std::vector<Measured> meas = parse_measured_csv(csv, "m.csv");
  // Columns are found by name: the engine's order (context,batch,model,tpot_ms) reads the same.
  const std::vector<Measured> engine =
      parse_measured_csv("context,batch,model,tpot_ms\n4096,1,hybrid,2.5\n", "e.csv");
  ASSERT_EQ(engine.size(), 1u);
  EXPECT_EQ(engine[0].context, 4096);
  EXPECT_EQ(engine[0].model, ModelKind::kHybrid);
  EXPECT_EQ(*engine[0].tpot_ms, 2.5);
  ASSERT_EQ(meas.size(), 2u);
  EXPECT_FALSE(meas[0].prefill_ms.has_value());
  EXPECT_EQ(*meas[0].tpot_ms, 2.5);
  EXPECT_EQ(meas[1].model, ModelKind::kAllMla);
  const KimiLinearConfig c = models::kimi_linear_48b();
  const GpuProfile g = gpu_profile("h200");
  const auto rows = simulate(c, g, {4096}, {{1, false}}, meas, {});
  // (hybrid, 4096, 1) and (all-mla, 4096, 1) from the grid, (all-mla, 131072, 3) from the file.
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_TRUE(rows[0].measured.has_value());
  EXPECT_FALSE(rows[1].measured.has_value());
  EXPECT_EQ(rows[2].context, 131072);
  EXPECT_EQ(rows[2].batch, 3);
  ASSERT_TRUE(rows[2].measured.has_value());
  EXPECT_EQ(rows[2].tpot_ms, predict(c, ModelKind::kAllMla, g, 131072, 3, {}).tpot_ms);
  EXPECT_DOUBLE_EQ(relative_error(3.0, 2.5), 0.2);
  const std::string out = predictions_csv(rows);
  const std::string want_hybrid = fmt::format("hybrid,4096,1,{},", max_batch(c, g, 4096, {}));
  EXPECT_NE(out.find(want_hybrid), std::string::npos);
  // The hybrid row ends with: no prefill measured, tpot 2.5 and its error, 400 and its error.
  const std::string tail = fmt::format(",,,2.5,{:.4f},400,{:.4f}\n", (rows[0].tpot_ms - 2.5) / 2.5,
                                       (rows[0].tokens_per_s - 400) / 400);
  EXPECT_NE(out.find(tail), std::string::npos) << out;
  EXPECT_NE(out.find(fmt::format(",900,{:.4f},,,,\n", (rows[2].prefill_ms - 900) / 900)),
            std::string::npos)
      << out;
  // The header names the columns bench-infer's CSV shares.
  for (const char* col : {"model,context,batch", "prefill_ms", "tpot_ms", "tokens_per_s",
                          "cache_bytes_per_seq", "measured_tpot_ms", "tpot_rel_err"})
    EXPECT_NE(out.find(col), std::string::npos) << col;
}

TEST(Simulator, BadInputsAreOneClearLine) {
  one_line(message_of([] { gpu_profile("h300"); }), "h300");
  one_line(message_of([] { gpu_profile("h300"); }), "h200, h100");
  one_line(message_of([] { parse_contexts({"4096", "0"}); }), "--contexts: 0");
  one_line(message_of([] { parse_contexts({"lots"}); }), "'lots'");
  one_line(message_of([] { parse_batches({"0"}); }), "--batch: 0");
  one_line(message_of([] { parse_batches({"most"}); }), "'most'");
  EXPECT_EQ(parse_contexts({"4K", "1M", "100"}), (std::vector<int64_t>{4096, 1 << 20, 100}));
  const KimiLinearConfig c = models::kimi_linear_48b();
  one_line(message_of([&] {
             simulate(c, gpu_profile("h200"), {0}, {{1, false}}, {}, {});
           }),
           "--contexts: 0");
  const std::string head = "model,context,batch,tpot_ms\n";
  auto csv_error = [&](const std::string& body) {
    return message_of([&] { parse_measured_csv(head + body, "m.csv"); });
  };
  one_line(csv_error("hybrid,4096,1,abc\n"), "m.csv line 2: column 'tpot_ms': 'abc'");
  one_line(csv_error("hybrid,4096,1,nan\n"), "column 'tpot_ms'");
  one_line(csv_error("hybrid,4096,1\n"), "m.csv line 2: 3 cells");
  one_line(csv_error("hybrid,0,1,2\n"), "column 'context'");
  one_line(csv_error("hybrid,4096,x,2\n"), "column 'batch'");
  one_line(csv_error("mamba,4096,1,2\n"), "'mamba'");
  one_line(csv_error("hybrid,4096,1,\n"), "no measured value");
  one_line(csv_error("hybrid,4096,1,2\nhybrid,4096,1,3\n"), "line 3");
  one_line(csv_error("\"hybrid\",4096,1,2\n"), "quoted");
  one_line(message_of([] { parse_measured_csv("model,batch,tpot_ms\n", "m.csv"); }),
           "no column 'context'");
  one_line(message_of([] { parse_measured_csv("model,context,batch\n", "m.csv"); }),
           "none of prefill_ms");
  one_line(message_of([] { parse_measured_csv("", "m.csv"); }), "m.csv: empty");
  one_line(message_of([] { read_measured_csv("/nonexistent/m.csv"); }), "/nonexistent/m.csv");
  const std::string split_head = "model,context,batch,tpot_ms,mla_splits_per_sm\n";
  one_line(message_of([&] { parse_measured_csv(split_head + "hybrid,4096,1,2,9\n", "m.csv"); }),
           "column 'mla_splits_per_sm': 9 is not in 1..8");
}

// bench-infer records the MLA split rule of each row; the engine model names the rows that ran
// another rule than the one it predicts, in one line, and the setting that matches them.
TEST(EngineModel, MeasuredRowsOfAnotherSplitRuleAreNamed) {
  const std::vector<Measured> m = parse_measured_csv(
      "model,context,batch,tpot_ms,mla_splits_per_sm\n"
      "hybrid,4096,1,6.0,2\nhybrid,4096,8,18.3,2\nhybrid,1048576,1,12.4,\n",
      "m.csv");
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].mla_splits_per_sm, 2);
  EXPECT_FALSE(m[2].mla_splits_per_sm.has_value());  // an empty cell: not recorded
  EngineProfile e = engine_profile("h200");
  const std::string w = split_rule_mismatch(m, e);  // the rule: 1 per SM at B=1, 2 at B=8
  EXPECT_NE(w.find("1 of 2 measured rows"), std::string::npos) << w;
  EXPECT_NE(w.find("KIMI_ENGINE_MLA_SPLITS_PER_SM=2"), std::string::npos) << w;
  EXPECT_EQ(w.find('\n'), std::string::npos) << w;
  e.forced_splits_per_sm = 2;
  EXPECT_EQ(split_rule_mismatch(m, e), "");
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

TEST(Simulator, ModelFromPresetFolderOrFileAndBadConfigIsOneLine) {
  EXPECT_EQ(resolve_model("", "kimi-linear-48b").num_hidden_layers, 27);
  const std::string tiny_dir = std::string(KIMI_GOLDEN_DIR) + "/kimi_tiny";
  const KimiLinearConfig from_dir = resolve_model(tiny_dir, "");
  EXPECT_EQ(resolve_model(tiny_dir + "/config.json", "").hidden_size, from_dir.hidden_size);
  EXPECT_EQ(model_source(tiny_dir, ""), tiny_dir + "/config.json");
  EXPECT_GT(predict(from_dir, ModelKind::kHybrid, gpu_profile("h200"), 4096, 1, {}).tpot_ms, 0);
  one_line(message_of([] { resolve_model("", ""); }), "--preset");
  one_line(message_of([] { resolve_model("x", "kimi-linear-48b"); }), "one of them");
  one_line(message_of([] { resolve_model("", "kimi-linear-1t"); }), "kimi-linear-1t");
  one_line(message_of([] { resolve_model("/nonexistent/config.json", ""); }),
           "/nonexistent/config.json");
  const std::string bad = testing::TempDir() + "/simulator_bad_config.json";
  {  // kimi_tiny's config with one value of the wrong type
    std::ifstream in(tiny_dir + "/config.json");
    std::stringstream text;
    text << in.rdbuf();
    std::string json = text.str();
    const size_t at = json.find("\"hidden_size\": 64");
    ASSERT_NE(at, std::string::npos);
    json.replace(at, 17, "\"hidden_size\": \"wide\"");
    std::ofstream(bad) << json;
  }
  const std::string msg = message_of([&] { resolve_model(bad, ""); });
  one_line(msg, bad);
  EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;
}

// `--layers N` of simulate and bench-infer: the first N layers keep their kinds, the counts and
// the cache shrink with them, and N outside 1..L is one line naming the flag.
TEST(Simulator, FirstLayersCutsTheDepthAndKeepsEachLayersKind) {
  const KimiLinearConfig full = resolve_model("", "kimi-linear-48b");
  const KimiLinearConfig cut = first_layers(full, 16);
  EXPECT_EQ(cut.num_hidden_layers, 16);
  auto upto = [](const std::vector<int64_t>& ids, int64_t n) {
    return std::count_if(ids.begin(), ids.end(), [n](int64_t i) { return i <= n; });
  };
  EXPECT_EQ(static_cast<int64_t>(cut.kda_layers.size()), upto(full.kda_layers, 16));
  EXPECT_EQ(static_cast<int64_t>(cut.full_attn_layers.size()), upto(full.full_attn_layers, 16));
  EXPECT_EQ(cut.kda_layers.size() + cut.full_attn_layers.size(), 16u);
  for (int64_t l = 0; l < 16; ++l) EXPECT_EQ(cut.is_mla(l), full.is_mla(l));
  EXPECT_EQ(first_layers(full, 0).num_hidden_layers, 27);
  EXPECT_EQ(first_layers(full, 27).num_hidden_layers, 27);
  const int64_t n = 1 << 20;
  const models::CacheSizes a = models::cache_sizes(full, 4, 2), b = models::cache_sizes(cut, 4, 2);
  EXPECT_LT(b.hybrid(n), a.hybrid(n));
  EXPECT_LT(models::parameter_count(cut).total, models::parameter_count(full).total);
  one_line(message_of([&] { first_layers(full, 28); }), "--layers 28");
  one_line(message_of([&] { first_layers(full, -1); }), "--layers -1");
  EXPECT_EQ(model_source("", "kimi-linear-48b", full, 16),
            "preset kimi-linear-48b, first 16 of 27 layers");
  EXPECT_EQ(model_source("", "kimi-linear-48b", full, 0), "preset kimi-linear-48b");
}

}  // namespace
}  // namespace kimi::inference
