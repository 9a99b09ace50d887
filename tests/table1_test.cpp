// The paper's Table 1, scaled down (issue 13): the ablation settings reach the model or are
// refused, the sweep files expand to the nine rows at equal training FLOPs, ranks and Spearman's
// rho, and `kimi-lab report --paper table1` on fabricated run directories whose perplexities
// and expected ranks were worked out by hand (and rho with an independent script).
#include "trainer/table1.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/autograd/autograd.h"
#include "core/tensor/error.h"
#include "models/language_model.h"
#include "tasks/lm_manifest.h"
#include "tasks/shards.h"
#include "trainer/config.h"
#include "trainer/rank_stats.h"
#include "trainer/report.h"
#include "trainer/sweep.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

std::string error_of(const std::vector<std::string>& overrides) {
  try {
    load_config("", overrides);
    return "";
  } catch (const UserError& e) {
    return e.what();
  }
}

TEST(Table1Config, SettingsThatNoLayerReadsAreRefusedInOneLine) {
  EXPECT_EQ(error_of({"model.mixer=mla", "model.output_gate=none"}),
            "model.output_gate=none: no layer has an output gate (only kda and gdn do; layers: "
            "mla, mla)");
  EXPECT_EQ(error_of({"model.mixer=kda", "model.rope=true"}),
            "model.rope=true: no layer uses positions (only attention and mla do; layers: kda, "
            "kda)");
  EXPECT_EQ(error_of({"model.mixer=[mamba2, kda]", "model.short_conv=false"}),
            "model.short_conv=false: mamba2 layers always keep their causal conv (HF Mamba2); it "
            "cannot be turned off there");
  EXPECT_EQ(error_of({"model.mixer=attention", "model.short_conv=false"}),
            "model.short_conv=false: no layer has a short conv to turn off (kda, gdn, deltanet "
            "do; layers: attention, attention)");
  EXPECT_EQ(error_of({"model.hybrid=kda:mla=3:1", "model.n_layers=4", "model.rope=true",
                      "model.qk_rope_dim=0"}),
            "model.qk_rope_dim must be even and > 0 when model.rope is on with MLA layers (the "
            "rotated slice) (got 0)");
  EXPECT_EQ(error_of({"model.output_gate=tanh"}),
            "model.output_gate: expected one of auto, sigmoid, swish, none; got 'tanh'");
  // Each ablation on the 3:1 hybrid is accepted.
  for (const char* ablation : {"model.output_gate=none", "model.output_gate=swish",
                               "model.short_conv=false", "model.rope=true"})
    EXPECT_EQ(
        error_of({"model.hybrid=kda:mla=3:1", "model.n_layers=4", "model.qk_rope_dim=8", ablation}),
        "")
        << ablation;
}

RunConfig tiny(const std::vector<std::string>& row) {
  std::vector<std::string> o = {"task.name=palindrome", "task.vocab_size=32", "model.d_model=16",
                                "model.n_layers=4",     "model.num_heads=2",  "model.head_dim=8",
                                "model.kv_lora_rank=8", "model.qk_rope_dim=4"};
  o.insert(o.end(), row.begin(), row.end());
  return load_config("", o);
}

bool has_parameter(const models::LanguageModel& m, const std::string& part) {
  for (const auto& [name, p] : m.named_parameters())
    if (name.find(part) != std::string::npos) return true;
  return false;
}

Tensor logits_of(const RunConfig& c) {
  NoGradGuard no_grad;
  models::LanguageModel m(c.model, c.task.vocab_size, 5);
  return m.forward(Tensor::from_vector(std::vector<int32_t>{1, 7, 3, 9, 2, 4}, {1, 6}));
}

TEST(Table1Config, EachRowBuildsTheModelItNames) {
  const std::string base = "model.hybrid=kda:mla=3:1";
  models::LanguageModel ref(tiny({base}).model, 32, 1);
  EXPECT_EQ(ref.layer_kinds(), (std::vector<std::string>{"kda", "kda", "kda", "mla"}));
  EXPECT_TRUE(has_parameter(ref, "g_proj"));
  EXPECT_TRUE(has_parameter(ref, "q_conv1d"));
  models::LanguageModel no_gate(tiny({base, "model.output_gate=none"}).model, 32, 1);
  EXPECT_FALSE(has_parameter(no_gate, "g_proj"));
  models::LanguageModel no_conv(tiny({base, "model.short_conv=false"}).model, 32, 1);
  EXPECT_FALSE(has_parameter(no_conv, "conv1d"));
  models::LanguageModel all_mla(tiny({"model.hybrid=kda:mla=0:1"}).model, 32, 1);
  EXPECT_EQ(all_mla.layer_kinds(), std::vector<std::string>(4, "mla"));
  // Same parameters, another gate function or positions: the outputs must move.
  const auto differs = [](const Tensor& a, const Tensor& b) {
    const auto x = a.to_vector<float>(), y = b.to_vector<float>();
    double d = 0;
    for (size_t i = 0; i < x.size(); ++i)
      d = std::max(d, static_cast<double>(std::abs(x[i] - y[i])));
    return d;
  };
  const Tensor sigmoid_out = logits_of(tiny({base}));
  EXPECT_GT(differs(sigmoid_out, logits_of(tiny({base, "model.output_gate=swish"}))), 1e-6);
  EXPECT_GT(differs(sigmoid_out, logits_of(tiny({base, "model.rope=true"}))), 1e-6);
  EXPECT_EQ(differs(sigmoid_out, logits_of(tiny({base, "model.output_gate=sigmoid"}))), 0.0)
      << "auto is KDA's sigmoid gate";
}

TEST(Table1Rows, ConfigsAreClassifiedAndCarryThePapersNumbers) {
  const auto row = [](const std::vector<std::string>& o) {
    std::vector<std::string> all = {"model.n_layers=16", "model.qk_rope_dim=8"};
    all.insert(all.end(), o.begin(), o.end());
    return table1_row(load_config("", all));
  };
  const Table1Row ref = row({"model.hybrid=kda:mla=3:1"});
  EXPECT_EQ(ref.key, "3:1");
  ASSERT_TRUE(ref.paper);
  EXPECT_DOUBLE_EQ(ref.paper->train_ppl, 9.23);
  EXPECT_DOUBLE_EQ(ref.paper->val_ppl, 5.65);
  EXPECT_EQ(row({"model.hybrid=kda:mla=0:1"}).key, "0:1");
  EXPECT_DOUBLE_EQ(row({"model.hybrid=kda:mla=0:1"}).paper->val_ppl, 5.77);
  EXPECT_EQ(row({"model.hybrid=kda:mla=15:1"}).key, "15:1");
  EXPECT_DOUBLE_EQ(row({"model.hybrid=kda:mla=15:1"}).paper->train_ppl, 9.34);
  const Table1Row swish = row({"model.hybrid=kda:mla=3:1", "model.output_gate=swish"});
  EXPECT_EQ(swish.key, "swish_gate");
  EXPECT_DOUBLE_EQ(swish.paper->val_ppl, 5.81);
  EXPECT_EQ(row({"model.hybrid=kda:mla=3:1", "model.short_conv=false"}).paper->val_ppl, 5.70);
  const Table1Row rope = row({"model.hybrid=kda:mla=3:1", "model.rope=true"});
  EXPECT_EQ(rope.key, "rope");
  EXPECT_FALSE(rope.paper) << "Table 1 has no RoPE perplexity";
  // Two changes at once are no Table 1 row.
  const Table1Row two = row({"model.hybrid=kda:mla=7:1", "model.output_gate=none"});
  EXPECT_EQ(two.key, "7:1+no_gate");
  EXPECT_FALSE(two.paper);
  // 15:1 at 8 layers is 7 KDA + 1 MLA: the row says what was built.
  EXPECT_EQ(table1_row(load_config("", {"model.n_layers=8", "model.hybrid=kda:mla=15:1"})).key,
            "7:1");
}

TEST(Table1Rows, AverageRanksAndSpearman) {
  EXPECT_EQ(average_ranks({5.65, 5.77, 5.66, 5.70, 5.82, 5.67, 5.81, 5.70}),
            (std::vector<double>{1, 6, 2, 4.5, 8, 3, 7, 4.5}));
  EXPECT_DOUBLE_EQ(spearman_rho({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(spearman_rho({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
  // Ties: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): sums of products of deviations 4.5,
  // of squares 4.5 and 5.
  EXPECT_NEAR(spearman_rho({1, 2, 2, 3}, {1, 2, 3, 4}), 4.5 / std::sqrt(4.5 * 5), 1e-12);
  EXPECT_TRUE(std::isnan(spearman_rho({1, 1, 1}, {1, 2, 3})));
  EXPECT_TRUE(std::isnan(spearman_rho({1}, {1})));
}

// ---- the sweep files ---------------------------------------------------------------------------

const std::map<std::string, std::string> kRowKeys = {
    {"ratio_0_1", "0:1"},         {"ratio_1_1", "1:1"},   {"ratio_3_1", "3:1"},
    {"ratio_7_1", "7:1"},         {"ratio_15_1", "15:1"}, {"no_gate", "no_gate"},
    {"swish_gate", "swish_gate"}, {"no_conv", "no_conv"}, {"rope", "rope"}};

// A prepared-data directory with `vocab` tokens and 4096 tokens per split (manifest and shards in
// data prepare's format), enough for seq_len 512.
std::string fake_lm_data(int64_t vocab) {
  const fs::path dir = fs::temp_directory_path() / "kimi_table1_test" / "lm_data";
  fs::create_directories(dir);
  nlohmann::json splits;
  for (const char* split : {"train", "val"}) {
    const std::string file = std::string(split) + "_000000.bin";
    tasks::write_shard((dir / file).string(), std::vector<uint32_t>(4096, 1), 1);
    splits[split] = {{"documents", 1},
                     {"bytes", 3 * 4096},
                     {"tokens", 4096},
                     {"shards", nlohmann::json::array({{{"file", file}, {"sha256", ""}}})}};
  }
  std::ofstream(dir / "manifest.json") << nlohmann::json{
      {"format", tasks::kManifestFormat},
      {"tokenizer", "bpe"},
      {"tokenizer_model", "tokenizer.model"},
      {"vocab_size", vocab},
      {"eos_id", 0},
      {"shard_version", 1},
      {"splits", splits}}.dump();
  return dir.string();
}

std::string row_of(const SweepPoint& p) {
  for (const auto& [k, v] : p.values)
    if (k == kRowKey) return v;
  return "";
}

void check_sweep_file(const std::string& file, size_t seeds, bool fake_data) {
  const SweepSpec spec = load_sweep_spec(file);
  std::vector<SweepPoint> points = expand_grid(spec);
  ASSERT_EQ(points.size(), kRowKeys.size() * seeds) << file;
  // A stand-in for prepared shards the test machine may not have (the CPU file reads README.md
  // from the repository root): the model and token budget, all FLOPs depend on, stay the file's.
  for (auto& p : points) {
    std::vector<std::string> o = p.overrides;
    o.push_back(fake_data ? "task.lm.data=" + fake_lm_data(8192)
                          : std::string("task.lm.path=") + KIMI_EXPERIMENTS_DIR + "/../README.md");
    p.config = load_config(spec.base, o);
  }
  const SweepPoint* ref = nullptr;
  for (const auto& p : points)
    if (row_of(p) == "ratio_3_1") ref = &p;
  ASSERT_NE(ref, nullptr);
  const double ref_flops = train_flops(ref->config);
  std::set<std::string> rows;
  for (const auto& p : points) {
    const std::string row = row_of(p);
    rows.insert(row);
    ASSERT_TRUE(kRowKeys.count(row)) << p.name;
    EXPECT_EQ(table1_row(p.config).key, kRowKeys.at(row)) << p.name;
    EXPECT_EQ(p.config.model.n_layers, 16) << "15:1 needs 16 layers to differ from 7:1";
    const double flops = train_flops(p.config);
    const double tokens_per_step =
        static_cast<double>(train_tokens(p.config)) / static_cast<double>(p.config.train.steps);
    const auto matching =
        std::llround(ref_flops / (train_flops_per_token(p.config) * tokens_per_step));
    EXPECT_NEAR(flops / ref_flops, 1.0, 0.01)
        << file << " " << p.name << ": set train.steps=" << matching << " (now "
        << p.config.train.steps << ")";
  }
  EXPECT_EQ(rows.size(), kRowKeys.size());
}

TEST(Table1Sweep, TheSweepFilesExpandToTheNineRowsAtEqualFlops) {
  check_sweep_file(std::string(KIMI_EXPERIMENTS_DIR) + "/paper/table1_ablation.yaml", 2, true);
  check_sweep_file(std::string(KIMI_EXPERIMENTS_DIR) + "/paper/table1_ablation_cpu.yaml", 1, false);
}

}  // namespace
}  // namespace kimi
