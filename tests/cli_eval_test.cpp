// kimi-lab eval through the built binary on the fixture's trained run: eval --seq-lens at other
// lengths (--ckpt by step or path, the latest by default) writes one CSV that keeps earlier
// checkpoints' rows, and eval --data on a good slice file prints the slice.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cli_fixture.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;
using cli_test::CliBadArgs;
using cli_test::CliResult;
using cli_test::slurp;

TEST_F(CliBadArgs, EvalAtOtherLengthsWritesOneCsvKeepingEarlierCheckpoints) {
  const fs::path csv = fs::path(run_) / "eval_lengths.csv";
  fs::remove(csv);
  const CliResult first = cli({"eval", "{RUN}", "--seq-lens", "128,256", "--ckpt", "1"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.out.find("trained at T=128"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("ckpt_step1.safetensors (step 1)"), std::string::npos) << first.out;
  const CliResult latest = cli({"eval", "{RUN}", "--seq-lens", "256"});  // default: the latest
  ASSERT_EQ(latest.exit_code, 0) << latest.err;
  EXPECT_NE(latest.out.find("(step 2)"), std::string::npos) << latest.out;
  // By path, relative to the run directory; the same (step, length) row is replaced.
  ASSERT_EQ(
      cli({"eval", "{RUN}", "--seq-lens", "256", "--ckpt", "ckpt_step2.safetensors"}).exit_code, 0);
  std::vector<std::string> rows;
  std::istringstream in(slurp(csv));
  for (std::string line; std::getline(in, line);) {
    size_t third = 0;  // the first three columns: step, task, seq_len
    for (int i = 0; i < 3 && third != std::string::npos; ++i) third = line.find(',', third + 1);
    rows.push_back(line.substr(0, third));
  }
  ASSERT_EQ(rows.size(), 4u) << slurp(csv);  // header, step 1 at 128 and 256, step 2 at 256
  EXPECT_EQ(rows[0].rfind("step,task,seq_len", 0), 0u);
  EXPECT_EQ(rows[1], "1,mqar,128");
  EXPECT_EQ(rows[2], "1,mqar,256");
  EXPECT_EQ(rows[3], "2,mqar,256");
}

TEST_F(CliBadArgs, EvalOnGoodDataPrintsTheSlice) {
  const CliResult r = cli({"eval", "{RUN}", "--data", "{TMP}/good.safetensors"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("s "), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(fs::path(run_) / "eval_good.csv"));
}

}  // namespace
}  // namespace kimi
