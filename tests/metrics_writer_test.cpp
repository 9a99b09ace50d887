// Tests of trainer/metrics_writer, trainer/run_dir and core/io/atomic_file: fixed columns,
// whole-file atomic rewrites, resume truncation, run directory contents, checkpoint discovery.
#include "trainer/metrics_writer.h"

#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "trainer/run_dir.h"

namespace kimi {
namespace {

class MetricsWriter : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("kimi_metrics_test_") +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  static std::string read(const std::string& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::filesystem::path dir_;
};

TEST_F(MetricsWriter, ColumnsAreTheTidyOnes) {
  EXPECT_EQ(fmt::format("{}", fmt::join(metrics_columns(), ",")),
            "step,loss,lr,grad_norm,tokens_per_s,ms_per_step,wall_s,tokens,flops,moe_max_load");
  EXPECT_EQ(fmt::format("{}", fmt::join(eval_columns(), ",")),
            "step,task,seq_len,num_kv_pairs,num_examples,loss,accuracy,exact_match,perplexity,"
            "bits_per_byte");
}

TEST_F(MetricsWriter, FlushRewritesTheWholeFile) {
  CsvTable t(path("metrics.csv"), metrics_columns());
  t.add_row({int64_t{10}, 2.5, 3e-4, 1.25, 1234.5, 12.0, 0.5, int64_t{640}, 1.5e9, std::string()});
  t.flush();
  EXPECT_EQ(read(path("metrics.csv")),
            "step,loss,lr,grad_norm,tokens_per_s,ms_per_step,wall_s,tokens,flops,moe_max_load\n"
            "10,2.5,0.0003,1.25,1234.5,12,0.5,640,1.5e+09,\n");
  t.add_row({int64_t{20}, 2.0, 3e-4, 1.0, 1000.0, 11.0, 1.0, int64_t{1280}, 3e9, std::string()});
  t.flush();
  EXPECT_EQ(t.to_csv(), read(path("metrics.csv")));
  EXPECT_EQ(t.rows().size(), 2u);
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().filename(), "metrics.csv") << "no temporary file left behind";
  }
  EXPECT_THROW(t.add_row({int64_t{1}}), Error);
}

TEST_F(MetricsWriter, ResumeDropsRowsPastTheCheckpoint) {
  CsvTable t(path("eval.csv"), eval_columns());
  for (int64_t step : {100, 200, 300}) {
    t.add_row({step, std::string("mqar"), int64_t{256}, int64_t{32}, int64_t{64}, 0.5, 0.9, 0.4,
               1.65, std::string()});
  }
  t.add_row({int64_t{300}, std::string("a,\"b\""), int64_t{1}, int64_t{0}, int64_t{1}, 0.0, 1.0,
             1.0, 1.0, std::string()});
  t.flush();
  CsvTable resumed = CsvTable::resume(path("eval.csv"), eval_columns(), 200);
  ASSERT_EQ(resumed.rows().size(), 2u);
  EXPECT_EQ(resumed.rows()[1][0], "200");
  CsvTable all = CsvTable::resume(path("eval.csv"), eval_columns(), 1000);
  ASSERT_EQ(all.rows().size(), 4u);
  EXPECT_EQ(all.rows()[3][1], "a,\"b\"") << "quoted cells round trip";
  EXPECT_TRUE(CsvTable::resume(path("absent.csv"), eval_columns(), 5).rows().empty());
  EXPECT_THROW(CsvTable::resume(path("eval.csv"), metrics_columns(), 5), UserError);
}

TEST_F(MetricsWriter, AtomicWriteReplacesAndNamesThePathOnError) {
  io::write_file_atomic(path("a.txt"), "one");
  io::write_file_atomic(path("a.txt"), "two");
  EXPECT_EQ(read(path("a.txt")), "two");
  write_json_atomic(path("s.json"), {{"accuracy", 0.5}});
  EXPECT_EQ(nlohmann::json::parse(read(path("s.json")))["accuracy"], 0.5);
  try {
    io::write_file_atomic(path("no/such/dir/x.txt"), "x");
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/dir/x.txt"), std::string::npos) << e.what();
  }
}

TEST_F(MetricsWriter, RunDirHoldsConfigAndOverrides) {
  RunConfig c = load_config("", {"train.lr=0.002", "name=t1"});
  c.out_dir = dir_.string();
  const std::string run = create_run_dir(c, {"train.lr=0.002", "name=t1"});
  EXPECT_EQ(run, path("t1"));
  EXPECT_EQ(read(run + "/overrides.txt"), "train.lr=0.002\nname=t1\n");
  EXPECT_DOUBLE_EQ(load_config(run + "/config.yaml", {}).train.lr, 0.002);
}

TEST_F(MetricsWriter, FindsTheLatestCheckpoint) {
  EXPECT_FALSE(find_latest_checkpoint(path("none")).has_value());
  EXPECT_FALSE(find_latest_checkpoint(dir_.string()).has_value());
  for (const char* name :
       {"ckpt_step500.safetensors", "ckpt_step1500.safetensors", "ckpt_step900.safetensors",
        "ckpt_step2000.safetensors.tmp", "ckpt_stepX.safetensors", "other.safetensors"}) {
    std::ofstream(path(name)) << "x";
  }
  const auto latest = find_latest_checkpoint(dir_.string());
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->step, 1500);
  EXPECT_EQ(latest->path, checkpoint_path(dir_.string(), 1500));
}

}  // namespace
}  // namespace kimi
