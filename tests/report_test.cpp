// kimi-lab report (trainer/report.h) on a fake sweep directory: sweep.json plus run directories
// holding only config.yaml, summary.json and eval.csv, so the numbers in the report are known.
#include "trainer/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <tuple>
#include <utility>
#include <vector>

#include "core/tensor/error.h"
#include "trainer/config.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// One finished MQAR run at T=seq_len (default 256) whose evals reach `best` (a fraction);
// `extra` overrides on top.
void fake_run(const fs::path& sweep, const std::string& name, const std::string& lr, int seed,
              double best, int seq_len = 256, const std::vector<std::string>& extra = {}) {
  const fs::path dir = sweep / name;
  fs::create_directories(dir);
  const std::string T = std::to_string(seq_len);
  std::vector<std::string> overrides = {"task.name=mqar",
                                        "task.vocab_size=128",
                                        "model.d_model=16",
                                        "model.num_heads=2",
                                        "model.head_dim=8",
                                        "train.seq_len=" + T,
                                        "train.steps=100",
                                        "train.lr=" + lr,
                                        "train.seed=" + std::to_string(seed),
                                        "eval.seq_lens=[" + T + "]",
                                        "train.device=cpu"};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  const RunConfig c = load_config("", overrides);
  std::ofstream(dir / "config.yaml") << to_yaml(c);
  std::ofstream(dir / "summary.json") << R"({"steps_done": 100, "final_loss": 0.5, "wall_s": 1})";
  std::ofstream(dir / "eval.csv")
      << "step,task,seq_len,num_kv_pairs,num_examples,loss,accuracy,exact_match,perplexity,"
         "bits_per_byte\n"
      << "50,mqar," << T << ",32,8,1," << best / 2 << ",0,2.718,\n100,mqar," << T << ",32,8,1,"
      << best << ",0,2.718,\n";
}

// An empty folder `name` under a fresh temp folder `parent` (removed first), for a fake sweep.
fs::path fresh_sweep_dir(const std::string& parent, const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / parent / name;
  fs::remove_all(dir.parent_path());
  fs::create_directories(dir);
  return dir;
}

// The sweep.json entry of point `index` named `name` ("key=value,...,seed=N"), its grid values
// (key, value) in order, then the seed.
nlohmann::json sweep_point(int index, const std::string& name,
                           const std::vector<std::pair<std::string, std::string>>& grid, int seed) {
  nlohmann::json values = nlohmann::json::array();
  for (const auto& [k, v] : grid) values.push_back(nlohmann::json::array({k, v}));
  values.push_back(nlohmann::json::array({"train.seed", std::to_string(seed)}));
  return {{"index", index},
          {"name", name},
          {"group", name.substr(0, name.find(",seed"))},
          {"values", values}};
}

TEST(Report, TableHasTheMeanOverSeedsOfTheBestMeanLrBesideThePaper) {
  const fs::path dir = fresh_sweep_dir("kimi_report_test", "figure4_mqar");
  // lr 0.001: seeds 1.0 and 0.2 (mean 0.6, one lucky seed); lr 0.002: 0.7 and 0.7 (mean 0.7).
  const std::vector<std::tuple<std::string, std::string, int, double>> runs = {
      {"lr=0.001,seed=0", "0.001", 0, 1.0},
      {"lr=0.001,seed=1", "0.001", 1, 0.2},
      {"lr=0.002,seed=0", "0.002", 0, 0.7},
      {"lr=0.002,seed=1", "0.002", 1, 0.7}};
  nlohmann::json points = nlohmann::json::array();
  int i = 0;
  for (const auto& [name, lr, seed, best] : runs) {
    fake_run(dir, name, lr, seed, best);
    points.push_back(sweep_point(i++, name, {{"train.lr", lr}}, seed));
  }
  std::ofstream(dir / "sweep.json")
      << nlohmann::json{{"name", "figure4_mqar"}, {"points", points}}.dump();
  const SweepReportText r = write_sweep_report(dir.string());
  EXPECT_EQ(read_file(dir / "report.md"), r.markdown);
  EXPECT_EQ(read_file(dir / "report.tex"), r.latex);
  // The row: lr 0.002 (best mean), 70.0 +- 0.0 over 2 seeds, paper 100 (MQAR, KDA, 256), -30.
  const auto row = r.markdown.find("| KDA | 256 | 0.002 |");
  ASSERT_NE(row, std::string::npos) << r.markdown;
  const std::string line = r.markdown.substr(row, r.markdown.find('\n', row) - row);
  EXPECT_NE(line.find("70.0"), std::string::npos) << line;
  EXPECT_NE(line.find("n=2"), std::string::npos) << line;
  EXPECT_NE(line.find("| 100"), std::string::npos) << line;
  EXPECT_NE(line.find("-30"), std::string::npos) << line;
  EXPECT_EQ(line.find("100.0 ±"), std::string::npos) << "one seed's maximum shown: " << line;
  EXPECT_NE(r.markdown.find("vocabulary 128"), std::string::npos);  // the task details
  EXPECT_NE(r.markdown.find("row layout: the pairs, `<sep>`, then the queries in one block; the "
                            "other slots padding"),
            std::string::npos)
      << r.markdown;
  EXPECT_NE(r.latex.find("\\begin{tabular}"), std::string::npos);
}

// The MQAR row layout keys (results/figure4/mqar_layout) are part of the task details.
TEST(Report, TaskDetailsSayWhereTheMqarQueriesSit) {
  const fs::path dir = fresh_sweep_dir("kimi_report_layout_test", "mqar_layout");
  fake_run(dir, "seed=0", "0.001", 0, 0.9, 256,
           {"task.mqar.sep=false", "task.mqar.query_layout=spread", "task.mqar.filler=random",
            "task.mqar.query_offset=1"});
  std::ofstream(dir / "sweep.json") << nlohmann::json{
      {"name", "mqar_layout"},
      {"points",
       {sweep_point(0, "seed=0", {}, 0)}}}.dump();
  const std::string md = write_sweep_report(dir.string()).markdown;
  EXPECT_NE(md.find("row layout: the pairs, no `<sep>`, then each query at its own slot "
                    "(power-law gaps, power_a 0.01) from 1 slot(s) on; the other slots random "
                    "tokens"),
            std::string::npos)
      << md;
}

// A sweep over a model key (two initial decay ranges, as figure4_kda_decay_init.yaml): every
// table row, and every line naming a difference from the paper, says which setting it is.
TEST(Report, RowsOfSettingsThatDifferInAModelKeyNameTheirSetting) {
  const fs::path dir = fresh_sweep_dir("kimi_report_test_settings", "decay");
  nlohmann::json points = nlohmann::json::array();
  int i = 0;
  for (const char* dt : {"0.1", "0.01"})
    for (int seed : {0, 1}) {
      const std::string name = std::string("dt_max=") + dt + ",seed=" + std::to_string(seed);
      fake_run(dir, name, "0.001", seed, std::string(dt) == "0.1" ? 0.04 : 0.98, 1024,
               {std::string("model.dt_max=") + dt, "model.dt_min=1e-4", "task.vocab_size=512"});
      points.push_back(sweep_point(i++, name, {{"model.dt_max", dt}}, seed));
    }
  std::ofstream(dir / "sweep.json") << nlohmann::json{{"name", "decay"}, {"points", points}}.dump();
  const std::string md = write_sweep_report(dir.string()).markdown;
  const auto steps = md.find("## Accuracy against steps at T=1024");
  ASSERT_NE(steps, std::string::npos) << md;
  EXPECT_NE(md.find("| setting | mixer | lr | first step at >= 94%", steps), std::string::npos)
      << md;
  EXPECT_NE(md.find("| model.dt_max=0.01", steps), std::string::npos) << md;
  EXPECT_NE(md.find("| model.dt_max=0.1", steps), std::string::npos) << md;
  EXPECT_NE(md.find("KDA (model.dt_max=0.1"), std::string::npos) << md;  // the difference line
}

// Attention with RoPE beside KDA without (a `when` case of the Figure 4 files): model.rope
// varies over the sweep but is decided by the mixer, so it is no setting column.
TEST(Report, AKeyDecidedByTheMixerIsNoSetting) {
  const fs::path dir = fresh_sweep_dir("kimi_report_test_mixer_key", "fig4");
  nlohmann::json points = nlohmann::json::array();
  int i = 0;
  for (const char* mixer : {"kda", "attention"}) {
    const std::string name = std::string("mixer=") + mixer + ",seed=0";
    std::vector<std::string> extra = {std::string("model.mixer=") + mixer};
    if (std::string(mixer) == "attention") extra.push_back("model.rope=true");
    fake_run(dir, name, "0.001", 0, 0.9, 256, extra);
    points.push_back(sweep_point(i++, name, {{"model.mixer", mixer}}, 0));
  }
  std::ofstream(dir / "sweep.json") << nlohmann::json{{"name", "fig4"}, {"points", points}}.dump();
  const std::string md = write_sweep_report(dir.string()).markdown;
  EXPECT_NE(md.find("| KDA | 256 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| Attention (RoPE) | 256 |"), std::string::npos) << md;
  EXPECT_EQ(md.find("| setting"), std::string::npos) << md;
  EXPECT_EQ(md.find("model.rope="), std::string::npos) << md;
}

TEST(Report, ADirectoryWithoutSweepJsonIsRefusedByName) {
  const fs::path dir = fs::temp_directory_path() / "kimi_report_test_empty";
  fs::create_directories(dir);
  try {
    make_sweep_report(dir.string());
    ADD_FAILURE() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.string()), std::string::npos) << e.what();
  }
}

TEST(Report, PaperNumbersAreDesignSectionSix) {
  EXPECT_DOUBLE_EQ(paper_figure4("mqar", "gdn", 1024)->accuracy, 79);
  EXPECT_TRUE(paper_figure4("mqar", "gdn", 1024)->approximate);
  EXPECT_DOUBLE_EQ(paper_figure4("stack", "mamba2", 1024)->accuracy, 0);
  EXPECT_FALSE(paper_figure4("stack", "deltanet", 1024).has_value());
}

}  // namespace
}  // namespace kimi
