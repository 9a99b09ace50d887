// kimi-lab run through the built binary: an integral exponent for an integer key trains
// (train.steps=2e0), the warning before a GPU-sized run on the CPU comes before any training
// step (none with --no-estimate), and --profile-step writes its table.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/cli_fixture.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;
using cli_test::CliBadArgs;
using cli_test::CliResult;
using cli_test::run_cli;

TEST_F(CliBadArgs, IntegralExponentForAnIntegerKeyIsAccepted) {
  // train.steps=2e0 is 2: the run trains (into its own directory) and finishes.
  const CliResult r = cli({"run", "{Q}", "train.steps=2e0", "model.d_model=16", "model.head_dim=8",
                           "train.batch_size=2", "eval.num_examples=4", "--out", "{TMP}/exp_steps",
                           "--no-plot", "--no-progress"},
                          300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp_ / "exp_steps" / "ckpt_step2.safetensors"));
}

TEST_F(CliBadArgs, LongCpuRunIsWarnedAboutBeforeTraining) {
  // The quickstart at 10 million steps: the estimate (timed here) is far past 30 minutes. The
  // child is killed once the warning is out; it must come before any training step.
  const CliResult r = run_cli(expand({"run", "{Q}", "train.steps=10000000", "--out", "{TMP}/long",
                                      "--no-plot", "--no-progress"}),
                              tmp_ / "work", 300, "Ctrl-C stops it");
  EXPECT_NE(r.err.find("on the CPU: about"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("experiments/quickstart.yaml"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("train.steps=1500"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("run dir "), std::string::npos) << "warned after the run began: " << r.err;
  // --no-estimate: no timing, no warning (the run is stopped at its first step).
  const CliResult quiet =
      cli({"run", "{Q}", "train.steps=10000000", "--stop-at", "1", "--no-estimate", "--out",
           "{TMP}/quiet", "--no-plot", "--no-progress"},
          300);
  EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err.find("on the CPU: about"), std::string::npos) << quiet.err;
}

TEST_F(CliBadArgs, ProfileStepWritesTheOpTable) {
  // Step 2 of 3, op by op: the table after the run and profile_step.csv in the run directory,
  // with the model's ops in both passes (the quickstart's KDA layers run the delta rule).
  const CliResult r = cli({"run", "{Q}", "train.steps=3", "model.d_model=16", "model.head_dim=8",
                           "train.batch_size=2", "eval.num_examples=4", "--profile-step", "2",
                           "--out", "{TMP}/prof", "--no-plot", "--no-progress"},
                          300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("step 2 op by op"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step 1 ran in"), std::string::npos) << r.out;
  const fs::path csv = tmp_ / "prof" / "profile_step.csv";
  ASSERT_TRUE(fs::exists(csv));
  std::ifstream in(csv);
  std::string header, line, all;
  std::getline(in, header);
  EXPECT_EQ(header, "step,op,pass,calls,ms,share,us_per_call");
  while (std::getline(in, line)) all += line + "\n";
  EXPECT_NE(all.find("2,delta_rule,forward,"), std::string::npos) << all;
  EXPECT_NE(all.find("2,delta_rule,backward,"), std::string::npos) << all;
  EXPECT_NE(all.find("2,AdamW,step,"), std::string::npos) << all;
  EXPECT_NE(all.find("2,cross_entropy,backward,"), std::string::npos) << all;
}

}  // namespace
}  // namespace kimi
