// What the inference simulator reads (suites Simulator, EngineModel): the join of a measurement
// CSV with its relative errors, the MLA split rule of measured rows, one-line errors for bad
// inputs, the model from a preset, folder or config file, and --layers N.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/tensor/error.h"
#include "inference/engine_model.h"
#include "inference/measured_csv.h"
#include "inference/report.h"
#include "inference/sim_args.h"
#include "inference/simulator.h"
#include "tests/simulator_fixture.h"
#include "tests/user_error_message.h"

namespace kimi::inference {
namespace {

using kimi::test_util::message_of;
using models::KimiLinearConfig;
using simulator_test::one_line;

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
