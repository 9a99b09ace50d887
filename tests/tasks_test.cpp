// Tests of the task generators (tasks/): label placement per task against an independent
// reading of the row, determinism per seed, the train/eval filter, the accuracy helper, and
// zoology-form MQAR statistics against zoology's own test sets (golden/zoology_mqar).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/tensor/error.h"
#include "tasks/eval_set.h"
#include "tasks/metrics.h"
#include "tasks/task.h"
#include "trainer/config.h"

namespace kimi::tasks {
namespace {

TaskConfig task_config(const std::string& name) {
  TaskConfig c;
  c.name = name;
  return c;
}

const int32_t* row(const std::vector<int32_t>& v, int64_t r, int64_t seq_len) {
  return v.data() + r * seq_len;
}

TEST(Tasks, PalindromeLabelsAreTheReversedInput) {
  auto task = make_task(task_config("palindrome"));
  const int64_t T = 64, n = (T - 1) / 2;  // 31 tokens, <sep> at 31, reversal at 32..62, pad 63
  const Batch b = task->sample(8, T, 7);
  for (int64_t r = 0; r < b.batch; ++r) {
    const int32_t* x = row(b.inputs, r, T);
    const int32_t* y = row(b.labels, r, T);
    EXPECT_EQ(x[n], 1);
    EXPECT_EQ(x[T - 1], 0);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_GE(x[i], 2);
      EXPECT_EQ(x[2 * n - i], x[i]);  // x_1..x_n <sep> x_n..x_1
    }
    for (int64_t t = 0; t < T; ++t) {
      // Reversed token at n+1+j is x_{n-j}; it must predict x_{n-j-1}, ending at x_1.
      const bool scored = t > n && t < 2 * n;
      EXPECT_EQ(y[t], scored ? x[2 * n - (t + 1)] : kIgnoreLabel) << "row " << r << " t " << t;
    }
  }
}

TEST(Tasks, PalindromeScoreSepAndFixedLength) {
  TaskConfig c = task_config("palindrome");
  c.palindrome.score_sep = true;
  c.palindrome.length = 5;
  const Batch b = make_task(c)->sample(2, 20, 1);
  EXPECT_EQ(b.inputs[5], 1);
  EXPECT_EQ(b.labels[5], b.inputs[4]);  // at <sep> the model names x_n
  int64_t scored = 0;
  for (int64_t t = 0; t < 20; ++t) scored += b.labels[t] != kIgnoreLabel;
  EXPECT_EQ(scored, 5);
  for (int64_t t = 11; t < 20; ++t) EXPECT_EQ(b.inputs[t], 0);  // padding after 2n+1 tokens
}

TEST(Tasks, MqarKimiLabelIsTheValuePairedWithTheQueryKey) {
  TaskConfig c = task_config("mqar");
  c.vocab_size = 64;
  const int64_t T = 64, K = T / 8;
  const Batch b = make_task(c)->sample(16, T, 3);
  for (int64_t r = 0; r < b.batch; ++r) {
    const int32_t* x = row(b.inputs, r, T);
    const int32_t* y = row(b.labels, r, T);
    std::map<int32_t, int32_t> kv;
    for (int64_t i = 0; i < K; ++i) {
      EXPECT_TRUE(kv.emplace(x[2 * i], x[2 * i + 1]).second) << "keys are distinct";
      EXPECT_GE(x[2 * i], 2);
      EXPECT_LT(x[2 * i], 33);      // keys: lower half of [2, 64)
      EXPECT_GE(x[2 * i + 1], 33);  // values: upper half
    }
    EXPECT_EQ(x[2 * K], 1);
    std::map<int32_t, int> queried;
    for (int64_t t = 0; t < T; ++t) {
      if (t > 2 * K && t <= 3 * K) {
        ASSERT_TRUE(kv.count(x[t]));
        EXPECT_EQ(y[t], kv[x[t]]);
        ++queried[x[t]];
      } else {
        EXPECT_EQ(y[t], kIgnoreLabel);
      }
    }
    EXPECT_EQ(queried.size(), static_cast<size_t>(K)) << "each key queried once";
  }
}

TEST(Tasks, MqarZoologyLayout) {
  TaskConfig c = task_config("mqar");
  c.mqar.form = "zoology";
  const int64_t T = 128, K = 8;
  c.mqar.num_kv_pairs = K;
  const Batch b = make_task(c)->sample(32, T, 11);
  for (int64_t r = 0; r < b.batch; ++r) {
    const int32_t* x = row(b.inputs, r, T);
    const int32_t* y = row(b.labels, r, T);
    std::map<int32_t, int32_t> kv;
    for (int64_t i = 0; i < K; ++i) {
      EXPECT_TRUE(x[2 * i] >= 1 && x[2 * i] < 4096);
      EXPECT_TRUE(x[2 * i + 1] >= 4096 && x[2 * i + 1] < 8192);
      kv[x[2 * i]] = x[2 * i + 1];
    }
    int64_t labels = 0;
    for (int64_t t = 0; t < T; ++t) {
      if (y[t] == kIgnoreLabel) continue;
      ++labels;
      EXPECT_GE(t, 2 * K);
      EXPECT_EQ((t - 2 * K) % 2, 0) << "queries sit at even offsets after the pairs";
      EXPECT_EQ(y[t], kv.at(x[t])) << "label at the query key = its value";
    }
    EXPECT_EQ(labels, K);
  }
}

// The golden file, read without the safetensors library (8-byte length, JSON header, data).
std::map<std::string, std::vector<int32_t>> read_int32_tensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::map<std::string, std::vector<int32_t>> out;
  const auto json = nlohmann::json::parse(header);
  for (auto it = json.begin(); it != json.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const size_t begin = it.value().at("data_offsets").at(0).get<size_t>();
    const size_t end = it.value().at("data_offsets").at(1).get<size_t>();
    std::vector<int32_t> values((end - begin) / 4);
    std::memcpy(values.data(), data.data() + begin, end - begin);
    out[it.key()] = std::move(values);
  }
  return out;
}

struct GapStats {
  double mean_gap = 0, frac_small = 0;  // gap = (query pos - 2K) / 2; small = gap < 4
  int64_t min_labels = 1 << 30, max_labels = 0;
  int32_t min_key = 1 << 30, max_key = 0, min_value = 1 << 30, max_value = 0;
};

GapStats gap_stats(const std::vector<int32_t>& x, const std::vector<int32_t>& y, int64_t T,
                   int64_t K) {
  GapStats s;
  const int64_t rows = static_cast<int64_t>(x.size()) / T;
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t labels = 0;
    for (int64_t i = 0; i < K; ++i) {
      s.min_key = std::min(s.min_key, x[r * T + 2 * i]);
      s.max_key = std::max(s.max_key, x[r * T + 2 * i]);
    }
    for (int64_t t = 0; t < T; ++t) {
      const int32_t label = y[r * T + t];
      if (label == kIgnoreLabel) continue;
      ++labels;
      const int64_t gap = (t - 2 * K) / 2;
      s.mean_gap += gap;
      s.frac_small += gap < 4;
      ++count;
      s.min_value = std::min(s.min_value, label);
      s.max_value = std::max(s.max_value, label);
    }
    s.min_labels = std::min(s.min_labels, labels);
    s.max_labels = std::max(s.max_labels, labels);
  }
  s.mean_gap /= count;
  s.frac_small /= count;
  return s;
}

TEST(Tasks, ZoologyFormMatchesZoologyTestSetStatistics) {
  const std::string path = std::string(KIMI_GOLDEN_DIR) + "/zoology_mqar.safetensors";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
  const auto golden = read_int32_tensors(path);
  for (auto [T, K] :
       std::vector<std::pair<int64_t, int64_t>>{{64, 4}, {128, 8}, {256, 16}, {512, 64}}) {
    const std::string slice = "T" + std::to_string(T) + "_kv" + std::to_string(K);
    TaskConfig c = task_config("mqar");
    c.mqar.form = "zoology";
    c.mqar.num_kv_pairs = K;
    const Batch b = make_task(c)->sample(500, T, 0);
    const GapStats ref =
        gap_stats(golden.at(slice + ".inputs"), golden.at(slice + ".labels"), T, K);
    const GapStats ours = gap_stats(b.inputs, b.labels, T, K);
    EXPECT_EQ(ours.min_labels, K) << slice;
    EXPECT_EQ(ours.max_labels, K) << slice;
    EXPECT_EQ(ref.min_labels, K) << slice;
    EXPECT_GE(ours.min_key, 1);
    EXPECT_LT(ours.max_key, 4096);
    EXPECT_GE(ours.min_value, 4096);
    EXPECT_LT(ours.max_value, 8192);
    // Power-law gaps: same mean and same mass near the pairs (500 x K samples each).
    EXPECT_NEAR(ours.mean_gap, ref.mean_gap, 0.1 * ref.mean_gap) << slice;
    EXPECT_NEAR(ours.frac_small, ref.frac_small, 0.05) << slice;
  }
}

TEST(Tasks, StackLabelIsTheElementOnTopOfThatStack) {
  TaskConfig c = task_config("stack");
  c.stack.num_stacks = 4;  // few stacks: deep stacks and many pops
  const int64_t T = 256;
  const Batch b = make_task(c)->sample(8, T, 5);
  int64_t pops = 0;
  for (int64_t r = 0; r < b.batch; ++r) {
    const int32_t* x = row(b.inputs, r, T);
    const int32_t* y = row(b.labels, r, T);
    std::vector<std::vector<int32_t>> stacks(4);
    for (int64_t t = 0; t + 3 <= T; t += 3) {
      const int32_t id = x[t + 1] - 3;
      ASSERT_TRUE(id >= 0 && id < 4);
      ASSERT_GE(x[t + 2], 7);  // elements after 3 specials + 4 ids
      if (x[t] == 1) {
        stacks[id].push_back(x[t + 2]);
        EXPECT_EQ(y[t + 1], kIgnoreLabel);
      } else {
        ASSERT_EQ(x[t], 2);
        ASSERT_FALSE(stacks[id].empty()) << "pop from an empty stack";
        EXPECT_EQ(y[t + 1], stacks[id].back());
        EXPECT_EQ(x[t + 2], stacks[id].back());
        stacks[id].pop_back();
        ++pops;
      }
      EXPECT_EQ(y[t], kIgnoreLabel);
      EXPECT_EQ(y[t + 2], kIgnoreLabel);
    }
    EXPECT_EQ(x[T - 1], 0);  // 256 = 85 ops + one pad
  }
  EXPECT_GT(pops, 8 * 85 / 4);
}

TEST(Tasks, SameSeedSameBatchOtherSeedsDiffer) {
  std::vector<TaskConfig> configs = {task_config("palindrome"), task_config("mqar"),
                                     task_config("stack"), task_config("mqar")};
  configs[3].mqar.form = "zoology";
  for (const auto& c : configs) {
    const auto task = make_task(c);
    const Batch a = task->sample(4, 64, 42), b = task->sample(4, 64, 42),
                d = task->sample(4, 64, 43);
    EXPECT_EQ(a.inputs, b.inputs) << task->name();
    EXPECT_EQ(a.labels, b.labels) << task->name();
    EXPECT_NE(a.inputs, d.inputs) << task->name();
    EXPECT_NE(std::vector<int32_t>(a.inputs.begin(), a.inputs.begin() + 64),
              std::vector<int32_t>(a.inputs.begin() + 64, a.inputs.begin() + 128))
        << "rows of a batch differ";
  }
}

TEST(Tasks, FilterKeepsTrainingRowsOutOfTheEvalSet) {
  TaskConfig c = task_config("palindrome");
  c.vocab_size = 4;  // 2 content tokens, n = 3: only 8 distinct rows at seq_len 7
  const auto task = make_task(c);
  const EvalSet eval = make_eval_set(*task, 7, 3, 99);
  SequenceFilter filter;
  filter.add(eval.data);
  ASSERT_GE(filter.size(), 2u);
  int64_t rejected = 0;
  const Batch b = sample_filtered(*task, 64, 7, 5, filter, &rejected);
  EXPECT_GT(rejected, 0);
  for (int64_t r = 0; r < b.batch; ++r) EXPECT_FALSE(filter.contains(row(b.inputs, r, 7), 7));
  const Batch again = sample_filtered(*task, 64, 7, 5, filter);
  EXPECT_EQ(b.inputs, again.inputs) << "deterministic";
  // Rows that were not redrawn are those of the plain sample.
  const Batch plain = task->sample(64, 7, 5);
  for (int64_t r = 0; r < b.batch; ++r) {
    if (!filter.contains(row(plain.inputs, r, 7), 7)) {
      EXPECT_EQ(0, std::memcmp(row(plain.inputs, r, 7), row(b.inputs, r, 7), 7 * 4));
    }
  }
}

TEST(Tasks, FilterGivesUpWithAUserErrorWhenEverythingIsHeldOut) {
  TaskConfig c = task_config("palindrome");
  c.vocab_size = 3;  // a single possible row
  const auto task = make_task(c);
  SequenceFilter filter;
  filter.add(make_eval_set(*task, 5, 1, 0).data);
  EXPECT_THROW(sample_filtered(*task, 1, 5, 0, filter), UserError);
}

TEST(Tasks, EvalSetsPerLengthAreStableAndCarryTheSlice) {
  RunConfig run;
  const auto task = make_task(run.task);
  EvalConfig eval;
  eval.seq_lens = {64, 128};
  eval.num_examples = 4;
  const auto sets = make_eval_sets(*task, eval);
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[1].seq_len, 128);
  EXPECT_EQ(sets[1].num_kv_pairs, 16);
  EXPECT_EQ(sets[0].task, "mqar");
  eval.seq_lens = {128};
  EXPECT_EQ(make_eval_sets(*task, eval)[0].data.inputs, sets[1].data.inputs);
  EXPECT_NE(sets[1].data.inputs, task->sample(4, 128, eval.seed).inputs);
}

TEST(Tasks, LmReadsWindowsAndHoldsOutTheTail) {
  const auto path = std::filesystem::temp_directory_path() / "kimi_tasks_lm.txt";
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>('a' + i % 26);
  std::ofstream(path) << text;
  TaskConfig c = task_config("lm");
  c.lm.path = path.string();
  const auto task = make_task(c);
  EXPECT_EQ(task->vocab_size(), 256);
  const Batch b = task->sample(4, 32, 1);
  for (int64_t t = 0; t + 1 < 32; ++t) EXPECT_EQ(b.labels[t], b.inputs[t + 1]);
  EXPECT_EQ(b.labels[31], (b.inputs[31] - 'a' + 1) % 26 + 'a');
  EXPECT_THROW(task->check_seq_len(100), UserError);  // the 100-byte tail cannot hold 101
  std::filesystem::remove(path);
  c.lm.path = "/nonexistent/corpus.txt";
  try {
    make_task(c);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/corpus.txt"), std::string::npos);
  }
}

TEST(Tasks, MqarPairsPerLengthFollowTokensPerPair) {
  TaskConfig c = task_config("mqar");
  auto task = make_task(c);
  EXPECT_EQ(task->num_kv_pairs(1024), 128);  // the default rule: seq_len / 8
  c.mqar.tokens_per_pair = 16;
  task = make_task(c);
  EXPECT_EQ(task->num_kv_pairs(1024), 64);
  EXPECT_EQ(task->num_kv_pairs(256), 16);
  // The row really holds that many pairs: as many scored query positions as pairs.
  const Batch b = task->sample(2, 256, 3);
  int64_t scored = 0;
  for (int32_t y : b.labels) scored += y != kIgnoreLabel;
  EXPECT_EQ(scored, 2 * 16);
  c.mqar.num_kv_pairs = 5;  // an explicit count wins over the rule
  EXPECT_EQ(make_task(c)->num_kv_pairs(1024), 5);
}

// Replays a stack row and returns the deepest any stack got.
size_t deepest_stack(const Batch& b, int64_t r, int64_t num_stacks) {
  const int32_t* x = b.inputs.data() + r * b.seq_len;
  std::vector<size_t> depth(static_cast<size_t>(num_stacks), 0);
  size_t deepest = 0;
  for (int64_t t = 0; t + 3 <= b.seq_len; t += 3) {
    const size_t id = static_cast<size_t>(x[t + 1] - 3);
    if (x[t] == 1) deepest = std::max(deepest, ++depth[id]);
    if (x[t] == 2) --depth[id];
  }
  return deepest;
}

TEST(Tasks, StackMaxDepthCapsEveryStackAndZeroKeepsTheOldRows) {
  TaskConfig c = task_config("stack");
  c.stack.num_stacks = 2;
  c.stack.push_prob = 0.9;  // mostly pushes: without a cap the stacks grow deep
  const int64_t T = 300;
  const Batch free_rows = make_task(c)->sample(4, T, 11);
  size_t deepest = 0;
  for (int64_t r = 0; r < 4; ++r) deepest = std::max(deepest, deepest_stack(free_rows, r, 2));
  EXPECT_GT(deepest, 10u);
  c.stack.max_depth = 1000;  // a cap never reached draws exactly as max_depth 0 does
  EXPECT_EQ(make_task(c)->sample(4, T, 11).inputs, free_rows.inputs);
  c.stack.max_depth = 3;
  const Batch capped = make_task(c)->sample(4, T, 11);
  for (int64_t r = 0; r < 4; ++r) EXPECT_LE(deepest_stack(capped, r, 2), 3u);
  int64_t scored = 0;  // both stacks full: pushes turn into pops, which are scored
  for (int32_t y : capped.labels) scored += y != kIgnoreLabel;
  EXPECT_GT(scored, 4 * 100 / 3);
}

// stack_pop_depths replays a row: a hand-made one gives the depths a pop reads, and the two
// configurations the report contrasts differ as the random walk says they must.
TEST(Tasks, StackPopDepthsReplayTheRows) {
  Batch b;
  b.batch = 1, b.seq_len = 22;  // push 0, push 0, pop 0, push 1, pop 1, pop 0, then pads
  b.inputs = {1, 3, 9, 1, 3, 10, 2, 3, 10, 1, 4, 11, 2, 4, 11, 2, 3, 9, 0, 0, 0, 0};
  b.labels.assign(22, kIgnoreLabel);
  EXPECT_EQ(stack_pop_depths(b, 2), (std::vector<int64_t>{2, 1, 1}));
  b.inputs[7] = 3 + 5;  // an id past the two stacks
  EXPECT_THROW(stack_pop_depths(b, 2), Error);
  TaskConfig c = task_config("stack");  // the Figure 4 files: 64 stacks, push probability 0.5
  c.stack.num_stacks = 64;
  c.vocab_size = 128;
  auto share_at_depth_one = [&](int64_t T) {
    const std::vector<int64_t> d = stack_pop_depths(make_task(c)->sample(32, T, 3), 64);
    return static_cast<double>(std::count(d.begin(), d.end(), 1)) / static_cast<double>(d.size());
  };
  EXPECT_GT(share_at_depth_one(1024), 0.8);  // nearly every pop empties its stack
  c.stack.num_stacks = 4;
  c.stack.push_prob = 0.6;
  const std::vector<int64_t> deep = stack_pop_depths(make_task(c)->sample(32, 1024, 3), 4);
  EXPECT_LT(static_cast<double>(std::count(deep.begin(), deep.end(), 1)) /
                static_cast<double>(deep.size()),
            0.3);
}

TEST(Tasks, TooShortLengthsNameTheKey) {
  TaskConfig c = task_config("mqar");
  c.mqar.num_kv_pairs = 40;
  try {
    make_task(c)->sample(1, 64, 0);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("task.mqar.num_kv_pairs"), std::string::npos) << e.what();
  }
  c.mqar.form = "zoology";
  c.mqar.num_kv_pairs = 4;
  EXPECT_THROW(make_task(c)->check_seq_len(63), UserError);  // zoology needs even lengths
}

TEST(Tasks, AccuracyCountsTokensAndExactMatch) {
  Batch b = empty_batch(3, 4);
  b.labels = {5, -100, 6, -100, /**/ 7, 8, -100, -100, /**/ -100, -100, -100, -100};
  const std::vector<int32_t> pred = {5, 0, 6, 0, /**/ 7, 9, 0, 0, /**/ 1, 1, 1, 1};
  Accuracy acc;
  accumulate_accuracy(b, pred.data(), &acc);
  EXPECT_EQ(acc.correct, 3);
  EXPECT_EQ(acc.total, 4);
  EXPECT_EQ(acc.seq_correct, 1);
  EXPECT_EQ(acc.seqs, 2);  // the row without labels is left out
  EXPECT_DOUBLE_EQ(acc.token_acc(), 0.75);
  EXPECT_DOUBLE_EQ(acc.exact_match(), 0.5);
  EXPECT_DOUBLE_EQ(Accuracy{}.token_acc(), 0.0);
}

}  // namespace
}  // namespace kimi::tasks
