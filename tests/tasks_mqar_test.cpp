// The MQAR task (suite Tasks): the Kimi and zoology layouts against an independent reading of
// the row, the Kimi form's spread queries and random filler, zoology-form statistics against
// zoology's own test sets (golden/zoology_mqar), pairs per length, and lengths too short for the
// pairs naming the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/tensor/error.h"
#include "tasks/task.h"
#include "tests/tasks_fixture.h"

namespace kimi::tasks {
namespace {

using tasks_test::row;
using tasks_test::task_config;

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

// The Kimi form with K pairs over a vocabulary of 64: the layout tests' base.
TaskConfig small_mqar(int64_t pairs) {
  TaskConfig c = task_config("mqar");
  c.vocab_size = 64;
  c.mqar.num_kv_pairs = pairs;
  return c;
}

// query_layout=spread and filler=random change only where the queries sit and what fills the
// other slots: for the same seed the pairs, and the keys queried in order, are the block rows'.
TEST(Tasks, MqarSpreadQueriesAndRandomFillerKeepThePairs) {
  const int64_t T = 128, K = 8;
  TaskConfig c = small_mqar(K);
  const Batch block = make_task(c)->sample(16, T, 5);
  c.mqar.query_layout = "spread";
  const Batch spread = make_task(c)->sample(16, T, 5);
  c.mqar.filler = "random";
  const Batch noisy = make_task(c)->sample(16, T, 5);
  int64_t gaps = 0, filler_tokens = 0;
  std::map<int32_t, int> filler_seen;
  for (int64_t r = 0; r < block.batch; ++r) {
    const int32_t *xb = row(block.inputs, r, T), *yb = row(block.labels, r, T);
    const int32_t *xs = row(spread.inputs, r, T), *ys = row(spread.labels, r, T);
    const int32_t *xn = row(noisy.inputs, r, T), *yn = row(noisy.labels, r, T);
    for (int64_t t = 0; t <= 2 * K; ++t) {
      EXPECT_EQ(xs[t], xb[t]) << "row " << r << " t " << t;
      EXPECT_EQ(xn[t], xb[t]) << "row " << r << " t " << t;
    }
    std::vector<int32_t> queried_block, queried_spread;
    for (int64_t t = 2 * K + 1; t < T; ++t) {
      if (yb[t] != kIgnoreLabel) queried_block.push_back(xb[t]);
      EXPECT_EQ(yn[t], ys[t]) << "the filler moves no query";
      if (ys[t] == kIgnoreLabel) {
        EXPECT_EQ(xs[t], 0) << "pad between spread queries";
        EXPECT_GE(xn[t], 2) << "random filler is never pad or <sep>";
        EXPECT_LT(xn[t], 64);
        ++filler_tokens;
        ++filler_seen[xn[t]];
        continue;
      }
      EXPECT_EQ((t - (2 * K + 1)) % 2, 0) << "spread queries sit on even offsets after <sep>";
      EXPECT_EQ(xn[t], xs[t]);
      queried_spread.push_back(xs[t]);
      if (ys[t - 1] == kIgnoreLabel && t - 1 > 2 * K) ++gaps;
    }
    EXPECT_EQ(queried_spread.size(), static_cast<size_t>(K));
    // The power-law gaps pick the slots in a random order, so compare the key sets.
    std::sort(queried_block.begin(), queried_block.end());
    std::sort(queried_spread.begin(), queried_spread.end());
    EXPECT_EQ(queried_spread, queried_block);
  }
  EXPECT_GT(gaps, 0) << "some query has a non-query slot right before it";
  EXPECT_GT(filler_seen.size(), 20u) << filler_tokens << " filler tokens";
}

// sep=false drops <sep>: the queries start right after the last value, so spread queries sit at
// even positions, as zoology's do; the pairs are the same rows'.
TEST(Tasks, MqarWithoutSepStartsTheQueriesAfterTheLastValue) {
  const int64_t T = 64, K = 8;
  TaskConfig c = small_mqar(K);
  const Batch with_sep = make_task(c)->sample(8, T, 9);
  c.mqar.sep = false;
  const Batch block = make_task(c)->sample(8, T, 9);
  c.mqar.query_layout = "spread";
  const Batch spread = make_task(c)->sample(8, T, 9);
  for (int64_t r = 0; r < block.batch; ++r) {
    const int32_t *xs = row(with_sep.inputs, r, T), *ys = row(with_sep.labels, r, T);
    const int32_t *xb = row(block.inputs, r, T), *yb = row(block.labels, r, T);
    const int32_t *xp = row(spread.inputs, r, T), *yp = row(spread.labels, r, T);
    for (int64_t t = 0; t < 2 * K; ++t) EXPECT_EQ(xb[t], xs[t]);
    for (int64_t j = 0; j < K; ++j) {  // the same queries, one position earlier
      EXPECT_EQ(xb[2 * K + j], xs[2 * K + 1 + j]);
      EXPECT_EQ(yb[2 * K + j], ys[2 * K + 1 + j]);
    }
    for (int64_t t = 0; t < T; ++t) {
      EXPECT_NE(xb[t], 1) << "no <sep>";
      EXPECT_NE(xp[t], 1) << "no <sep>";
      if (yp[t] != kIgnoreLabel) EXPECT_EQ(t % 2, 0) << "spread queries at even positions";
    }
  }
}

// query_offset=1 leaves one filler slot before the first query slot: every query moves one
// position on (with <sep> to even positions), the same keys in the same order.
TEST(Tasks, MqarQueryOffsetMovesEveryQueryOnePositionOn) {
  // T odd: both offsets leave 24 spread slots, so the power-law draws are the same.
  const int64_t T = 65, K = 8;
  TaskConfig c = small_mqar(K);
  for (const char* layout : {"block", "spread"}) {
    c.mqar.query_layout = layout;
    c.mqar.filler = std::string(layout) == "spread" ? "random" : "pad";
    c.mqar.query_offset = 0;
    const Batch at0 = make_task(c)->sample(8, T, 4);
    c.mqar.query_offset = 1;
    const Batch at1 = make_task(c)->sample(8, T, 4);
    for (int64_t r = 0; r < at0.batch; ++r) {
      const int32_t *x0 = row(at0.inputs, r, T), *y0 = row(at0.labels, r, T);
      const int32_t *x1 = row(at1.inputs, r, T), *y1 = row(at1.labels, r, T);
      EXPECT_EQ(x1[2 * K], 1) << "<sep> stays";
      EXPECT_EQ(y1[2 * K + 1], kIgnoreLabel) << layout << ": the slot after <sep> holds no query";
      int64_t queries = 0;
      for (int64_t t = 2 * K + 1; t + 1 < T; ++t) {
        EXPECT_EQ(y1[t + 1], y0[t]) << layout << " row " << r << " t " << t;
        if (y0[t] == kIgnoreLabel) continue;
        EXPECT_EQ(x1[t + 1], x0[t]);
        if (std::string(layout) == "spread")
          EXPECT_EQ((t + 1) % 2, 0) << "with <sep> and offset 1, spread queries at even positions";
        ++queries;
      }
      EXPECT_EQ(queries, K) << layout;
    }
  }
}

TEST(Tasks, MqarLayoutKeysAreRefusedWhereTheyCannotApply) {
  TaskConfig c = task_config("mqar");
  c.mqar.form = "zoology";
  c.mqar.query_layout = "spread";
  try {
    make_task(c);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("task.mqar.query_layout"), std::string::npos) << e.what();
  }
  c.mqar.query_layout = "block";
  c.mqar.sep = false;
  EXPECT_THROW(make_task(c), UserError);
  c = task_config("mqar");
  c.mqar.query_layout = "spread";
  c.mqar.num_kv_pairs = 8;
  c.mqar.num_queries = 30;  // (64 - 16) / 2 = 24 even slots after 8 pairs + <sep>
  try {
    make_task(c)->check_seq_len(64);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("task.mqar.num_queries"), std::string::npos) << e.what();
  }
  c.mqar.num_queries = 24;
  EXPECT_NO_THROW(make_task(c)->check_seq_len(64));
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

}  // namespace
}  // namespace kimi::tasks
