// kimi-lab generate through the built binary on kimi_tiny: several prompts each generate as
// they would alone, --stop-id ends a prompt, and a build without CUDA refuses --engine in one
// line.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "core/tensor/rng.h"
#include "tests/cli_fixture.h"

namespace kimi {
namespace {

using cli_test::CliBadArgs;
using cli_test::CliResult;

// generate on the f32 model: several prompts run one after the other, each as it runs alone;
// --stop-id ends a prompt at that id.
TEST_F(CliBadArgs, GenerateSeveralPromptsEachAsAlone) {
  auto generated = [](const std::string& out, const std::string& label) {
    const size_t at = out.find(label);
    if (at == std::string::npos) return std::string("(missing)");
    const size_t from = at + label.size();
    return out.substr(from, out.find('\n', from) - from);
  };
  const std::vector<std::string> base = {
      "generate", "{GOLD}/kimi_tiny", "--max-new-tokens", "6", "--seed", "5", "--temperature",
      "0.7"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return cli(args);
  };
  const CliResult both = with({"--prompt-ids", "1,5,9,13", "--prompt-ids", "7,3"});
  ASSERT_EQ(both.exit_code, 0) << both.err;
  const CliResult first = with({"--prompt-ids", "1,5,9,13"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  // Prompt 2 draws from stream mix_seed(5, 1): alone it is the first prompt of that seed.
  const CliResult second =
      cli({"generate", "{GOLD}/kimi_tiny", "--max-new-tokens", "6", "--seed",
           std::to_string(mix_seed(5, 1)), "--temperature", "0.7", "--prompt-ids", "7,3"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const std::string ids1 = generated(both.out, "generated 1 ids: ");
  EXPECT_EQ(ids1, generated(first.out, "generated ids: ")) << both.out;
  EXPECT_EQ(generated(both.out, "generated 2 ids: "), generated(second.out, "generated ids: "))
      << both.out;
  EXPECT_EQ(std::count(ids1.begin(), ids1.end(), ','), 5) << ids1;
  // Stop at the third generated id of prompt 1 (or earlier, where it first appears).
  std::vector<std::string> ids;
  std::stringstream ss(ids1);
  for (std::string id; std::getline(ss, id, ',');) ids.push_back(id);
  ASSERT_EQ(ids.size(), 6u);
  const CliResult stopped = with({"--prompt-ids", "1,5,9,13", "--stop-id", ids[2]});
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  const size_t upto = std::find(ids.begin(), ids.end(), ids[2]) - ids.begin();
  std::string want;
  for (size_t i = 0; i <= upto; ++i) want += (i ? "," : "") + ids[i];
  EXPECT_EQ(generated(stopped.out, "generated ids: "), want + " (stop id)") << stopped.out;
}

// A build without the decode engine refuses --engine in one line (a CUDA build skips this).
TEST_F(CliBadArgs, GenerateEngineWithoutCudaIsOneLine) {
  const CliResult v = cli({"version"});
  if (v.out.find("cuda: off") == std::string::npos) GTEST_SKIP() << "built with CUDA: " << v.out;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"generate", "--engine", "--preset", "kimi-linear-48b",
                                 "--prompt-ids", "1,2"},
        {"generate", "{GOLD}/kimi_tiny", "--engine", "--prompt-ids", "1", "--greedy"}}) {
    const CliResult r = cli(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.stderr_lines(), 1) << r.err;
    EXPECT_NE(r.err.find("generate --engine: this kimi-lab was built without CUDA"),
              std::string::npos)
        << r.err;
  }
}

}  // namespace
}  // namespace kimi
