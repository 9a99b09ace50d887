// Tests of `kimi-lab bench`'s argument checks (tools/cli/bench_args.h), issue 15: --reps 0 used
// to index an empty vector and an unknown --mixers name was timed as DeltaNet under its label.
#include "tools/cli/bench_args.h"

#include <gtest/gtest.h>

#include "core/tensor/error.h"

namespace kimi::cli {
namespace {

// The UserError message of check_bench_args (fails the test if none is thrown).
std::string rejection(const std::vector<std::string>& mixers, int reps) {
  try {
    check_bench_args(mixers, reps);
  } catch (const kimi::UserError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected kimi::UserError";
  return "";
}

TEST(BenchArgs, AcceptsEveryBenchedMixerAndPositiveReps) {
  EXPECT_NO_THROW(check_bench_args(benched_mixers(), 1));
  EXPECT_NO_THROW(check_bench_args({"kda", "attention"}, 3));
  EXPECT_NO_THROW(check_bench_args({}, 10));  // --decode-only clears the mixers
}

TEST(BenchArgs, RefusesRepsBelowOne) {
  EXPECT_EQ(rejection({"kda"}, 0), "bench --reps: must be at least 1 (got 0)");
  EXPECT_EQ(rejection({"kda"}, -3), "bench --reps: must be at least 1 (got -3)");
}

TEST(BenchArgs, RefusesUnknownMixersListingTheValidOnes) {
  EXPECT_EQ(rejection({"kda", "mla"}, 3),
            "bench --mixers: 'mla' is not benchmarked (kda, gdn, deltanet, mamba2, attention)");
  EXPECT_EQ(rejection({"fancy"}, 3),
            "bench --mixers: 'fancy' is not benchmarked (kda, gdn, deltanet, mamba2, attention)");
}

}  // namespace
}  // namespace kimi::cli
