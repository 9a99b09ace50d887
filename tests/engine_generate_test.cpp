// Batched generation on the decode engine, host side (suite EngineGenerate): the slot
// bookkeeping of inference/engine/generate.h on a fake engine whose logits are a hash of each
// slot's own history (so any cross-talk between slots, a finished slot stepped again or a token
// fed twice changes the ids), and the token picking shared with the f32 path. The real engine
// runs the same loop in tests/cuda/engine_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/tensor/error.h"
#include "core/tensor/rng.h"
#include "inference/engine/generate.h"
#include "models/kimi_linear_config.h"
#include "tests/golden.h"

namespace kimi::inference::engine {
namespace {

// A stand-in engine: slot s's logits after its tokens t_1..t_n are a hash of (t_1..t_n, v),
// whether the tokens came by prefill or by steps. It checks what the real engine checks (slots
// in range and distinct, room left, ids in the vocabulary) and records every step and prefill.
class FakeEngine final : public DecodeEngine {
 public:
  FakeEngine()
      : layout_(make_weight_layout(
            models::load_kimi_linear_config(test::golden_path("kimi_tiny") + "/config.json"))) {}
  const WeightLayout& layout() const override { return layout_; }
  void init_random(uint64_t) override {}
  void load_hf(const std::string&) override {}
  std::vector<float> read_weight(const WeightEntry&) const override { return {}; }
  void allocate_slots(int64_t slots, int64_t max_tokens) override {
    caches_.slots = slots, caches_.max_tokens = max_tokens;
    reset();
  }
  const CacheLayout& caches() const override { return caches_; }
  void reset() override { history_.assign(caches_.slots, {}); }
  void fill_synthetic(int64_t, int64_t, uint64_t) override {}
  void step(const std::vector<int32_t>& slots, const std::vector<int32_t>& tokens,
            std::vector<float>* logits) override {
    const int64_t V = layout_.config.vocab_size;
    std::set<int32_t> seen;
    for (size_t r = 0; r < slots.size(); ++r) {
      const int32_t s = slots[r];
      if (s < 0 || s >= caches_.slots || !seen.insert(s).second)
        throw UserError("fake engine: bad slot");
      if (static_cast<int64_t>(history_[s].size()) + 1 > caches_.max_tokens)
        throw UserError("fake engine: slot full");
      if (tokens[r] < 0 || tokens[r] >= V) throw UserError("fake engine: bad token");
    }
    steps.push_back(slots);
    logits->assign(slots.size() * V, 0.f);
    for (size_t r = 0; r < slots.size(); ++r) {
      history_[slots[r]].push_back(tokens[r]);
      row(slots[r], logits->data() + r * V);
    }
  }
  void prefill(int32_t slot, const std::vector<int32_t>& tokens,
               std::vector<float>* logits) override {
    check_prefill(caches_, slot, slot >= 0 && slot < caches_.slots ? length(slot) : 0, tokens,
                  layout_.config.vocab_size);
    prefills.emplace_back(slot, static_cast<int64_t>(tokens.size()));
    history_[slot].insert(history_[slot].end(), tokens.begin(), tokens.end());
    if (logits) {
      logits->assign(layout_.config.vocab_size, 0.f);
      row(slot, logits->data());
    }
  }
  void set_prefill_chunk(int64_t tokens) override { check_prefill_chunk(tokens); }
  int64_t prefill_chunk() const override { return kDefaultPrefillChunk; }
  int64_t length(int64_t slot) const override {
    return static_cast<int64_t>(history_.at(slot).size());
  }
  std::vector<float> read_slot(int64_t, bool) const override { return {}; }
  double time_steps_ms(int64_t, int, int) override { return 0; }
  StepPartMs time_step_parts(int64_t, int) override { return {}; }
  int64_t graph_nodes() const override { return 0; }
  int64_t distinct_experts_last_step() override { return 0; }
  double copy_bandwidth() override { return 0; }
  int64_t free_device_bytes() const override { return 0; }
  int64_t max_slots(int64_t) const override { return 0; }
  std::string device_name() const override { return "fake"; }

  std::vector<std::vector<int32_t>> steps;            // the slots of every step
  std::vector<std::pair<int32_t, int64_t>> prefills;  // (slot, tokens) of every prefill
  std::vector<std::vector<int32_t>> history_;

 private:
  // The logits of `slot` after its history so far.
  void row(int32_t slot, float* out) const {
    uint64_t key = 0x1234;
    for (int32_t t : history_[slot]) key = mix_seed(key, static_cast<uint64_t>(t));
    for (int64_t v = 0; v < layout_.config.vocab_size; ++v)
      out[v] = static_cast<float>(mix_seed(key, static_cast<uint64_t>(v)) >> 40) / (1 << 20);
  }

  WeightLayout layout_;
  CacheLayout caches_;
};

const std::vector<std::vector<int32_t>> kPrompts = {{3}, {4, 9, 1, 7}, {2, 2, 8, 5, 6, 0, 11}};

TEST(EngineGenerate, BatchedEqualsEachPromptAlone) {
  for (bool greedy : {true, false}) {
    GenerateOptions o;
    o.max_new = 6, o.seed = 11, o.sampling = {greedy, 0.8};
    FakeEngine batched;
    const GenerateOutput all = generate(batched, kPrompts, o);
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      FakeEngine alone;
      GenerateOptions oi = o;
      oi.seed = prompt_seed(o.seed, static_cast<int64_t>(i));  // its stream, as the first prompt
      const GenerateOutput one = generate(alone, {kPrompts[i]}, oi);
      EXPECT_EQ(all.ids[i], one.ids[0]) << "prompt " << i << (greedy ? " greedy" : " sampled");
      ASSERT_EQ(all.ids[i].size(), 6u);
      // The slot took its prompt and every new token but the last, in order.
      std::vector<int32_t> want = kPrompts[i];
      want.insert(want.end(), all.ids[i].begin(), all.ids[i].end() - 1);
      EXPECT_EQ(batched.history_[i], want) << "prompt " << i;
    }
  }
}

TEST(EngineGenerate, PromptsArePrefilledAndFinishedSlotsNotSteppedAgain) {
  GenerateOptions o;
  o.max_new = 4, o.sampling.greedy = true;
  FakeEngine e;
  const GenerateOutput out = generate(e, kPrompts, o);
  // One prefill per prompt (its first new token from the prefill's logits), then max_new - 1
  // decode steps of every prompt together.
  ASSERT_EQ(e.prefills.size(), 3u);
  for (int32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(e.prefills[i].first, i);
    EXPECT_EQ(e.prefills[i].second, static_cast<int64_t>(kPrompts[i].size()));
  }
  ASSERT_EQ(out.steps.size(), 6u);
  ASSERT_EQ(e.steps.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(out.steps[k].rows, 1);
    EXPECT_EQ(out.steps[k].prompt_rows, static_cast<int64_t>(kPrompts[k].size()));
    EXPECT_EQ(e.steps[k], (std::vector<int32_t>{0, 1, 2})) << "step " << k;
    EXPECT_EQ(out.steps[3 + k].rows, 3);
    EXPECT_EQ(out.steps[3 + k].prompt_rows, 0);
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(e.length(i), static_cast<int64_t>(kPrompts[i].size()) + 3);
    EXPECT_FALSE(out.stopped[i]);
  }
  // Longest prompt + max_new tokens per slot were allocated: room for all it feeds.
  EXPECT_EQ(e.caches().max_tokens, 7 + 4);
}

// A slot that finishes early (max_new 1: the prefill's token is the last) is never stepped.
TEST(EngineGenerate, OneNewTokenNeedsNoDecodeStep) {
  GenerateOptions o;
  o.max_new = 1, o.sampling.greedy = true;
  FakeEngine e;
  const GenerateOutput out = generate(e, kPrompts, o);
  EXPECT_TRUE(e.steps.empty());
  EXPECT_EQ(e.prefills.size(), 3u);
  for (size_t i = 0; i < kPrompts.size(); ++i) EXPECT_EQ(out.ids[i].size(), 1u);
}

// The prefill's host-side rules (decode_engine.h): chunk splitting and one-line refusals.
TEST(EnginePrefill, ChunksCoverThePromptInOrder) {
  using Chunks = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(prefill_chunks(1, 16), (Chunks{{0, 1}}));
  EXPECT_EQ(prefill_chunks(37, 16), (Chunks{{0, 16}, {16, 32}, {32, 37}}));
  EXPECT_EQ(prefill_chunks(32, 16), (Chunks{{0, 16}, {16, 32}}));
  EXPECT_TRUE(prefill_chunks(0, 16).empty());
  const Chunks big = prefill_chunks(131072 + 5, kDefaultPrefillChunk);
  ASSERT_EQ(big.size(), 9u);
  EXPECT_EQ(big.back(), (std::pair<int64_t, int64_t>{131072, 131077}));
  EXPECT_THROW(prefill_chunks(5, 0), UserError);
  EXPECT_THROW(prefill_chunks(5, kMaxPrefillChunk + 1), UserError);
}

TEST(EnginePrefill, RefusesInOneLine) {
  CacheLayout c;
  auto error_of = [&](int64_t slot, int64_t length, const std::vector<int32_t>& t) {
    try {
      check_prefill(c, slot, length, t, 128);
    } catch (const UserError& err) {
      return std::string(err.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of(0, 0, {1}).find("allocate_slots"), std::string::npos);
  c.slots = 2, c.max_tokens = 10;
  EXPECT_EQ(error_of(1, 3, {1, 2, 3}), "");
  EXPECT_EQ(error_of(0, 0, std::vector<int32_t>(10, 5)), "");  // exactly full
  EXPECT_NE(error_of(2, 0, {1}).find("slot 2"), std::string::npos);
  EXPECT_NE(error_of(-1, 0, {1}).find("slot -1"), std::string::npos);
  EXPECT_NE(error_of(0, 0, {}).find("no tokens"), std::string::npos);
  EXPECT_NE(error_of(0, 0, {1, 128}).find("token 128 out of range [0, 128)"), std::string::npos);
  const std::string full = error_of(1, 8, {1, 2, 3});
  EXPECT_NE(full.find("3 tokens onto slot 1 at 8 tokens overflows its 10"), std::string::npos);
  EXPECT_EQ(full.find('\n'), std::string::npos);
  FakeEngine e;
  e.allocate_slots(1, 4);
  EXPECT_THROW(e.set_prefill_chunk(0), UserError);
  EXPECT_THROW(e.prefill(0, {1, 2, 3, 4, 5}, nullptr), UserError);
}

TEST(EngineGenerate, StopIdEndsOnlyThatPrompt) {
  GenerateOptions o;
  o.max_new = 8, o.sampling.greedy = true, o.keep_logits = true;
  FakeEngine e0;
  const GenerateOutput free_run = generate(e0, kPrompts, o);
  // Stop where prompt 2's third new token is (its first appearance there).
  const int32_t stop = free_run.ids[1][2];
  o.stop_id = stop;
  FakeEngine e;
  const GenerateOutput out = generate(e, kPrompts, o);
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    const std::vector<int32_t>& full = free_run.ids[i];
    const auto hit = std::find(full.begin(), full.end(), stop);
    const std::vector<int32_t> want(full.begin(), hit == full.end() ? full.end() : hit + 1);
    EXPECT_EQ(out.ids[i], want) << "prompt " << i;
    EXPECT_EQ(out.stopped[i], hit != full.end()) << "prompt " << i;
    // The logits kept are those the ids were picked from.
    const int64_t V = 128;
    ASSERT_EQ(out.logits[i].size(), out.ids[i].size() * V);
    for (size_t t = 0; t < out.ids[i].size(); ++t) {
      const float* row = out.logits[i].data() + t * V;
      EXPECT_EQ(std::max_element(row, row + V) - row, out.ids[i][t]);
    }
  }
  EXPECT_TRUE(out.stopped[1]);
  EXPECT_LE(out.ids[1].size(), 3u);
  // A slot fed nothing after its last new token (the stop id or the max_new-th).
  for (size_t i = 0; i < kPrompts.size(); ++i)
    EXPECT_EQ(e.length(static_cast<int64_t>(i)),
              static_cast<int64_t>(kPrompts[i].size() + out.ids[i].size()) - 1);
}

TEST(EngineGenerate, RefusesEmptyPromptsAndIdsOutsideTheVocabulary) {
  FakeEngine e;
  GenerateOptions o;
  auto error_of = [&](const std::vector<std::vector<int32_t>>& p) {
    try {
      generate(e, p, o);
    } catch (const UserError& err) {
      return std::string(err.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of({}).find("--prompt-ids"), std::string::npos);
  EXPECT_NE(error_of({{1}, {}}).find("prompt 2 is empty"), std::string::npos);
  EXPECT_NE(error_of({{1, 128}}).find("id 128 outside the vocabulary [0, 128)"), std::string::npos);
  EXPECT_NE(error_of({{-1}}).find("--prompt-ids"), std::string::npos);
  EXPECT_TRUE(e.steps.empty());
}

TEST(EngineGenerate, PickTokenGreedyAndSampled) {
  Rng rng(1);
  const std::vector<double> tie = {0.5, 2.0, -1.0, 2.0};
  EXPECT_EQ(pick_token(tie.data(), 4, {true, 1.0}, rng), 1);  // the first of equal maxima
  // softmax({0, log 3}) = {1/4, 3/4}; at temperature 2, {1/(1+sqrt 3), sqrt 3/(1+sqrt 3)}.
  const std::vector<double> two = {0.0, std::log(3.0)};
  for (double temp : {1.0, 2.0}) {
    int ones = 0;
    const int n = 40000;
    for (int i = 0; i < n; ++i) ones += pick_token(two.data(), 2, {false, temp}, rng) == 1;
    const double p = temp == 1.0 ? 0.75 : std::sqrt(3.0) / (1 + std::sqrt(3.0));
    EXPECT_NEAR(static_cast<double>(ones) / n, p, 0.01) << "temperature " << temp;
  }
  // A cold temperature is argmax; the same seed gives the same draws.
  const std::vector<double> v = {0.1, 0.3, 0.2};
  EXPECT_EQ(pick_token(v.data(), 3, {false, 1e-4}, rng), 1);
  Rng a(9), b(9);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(pick_token(v.data(), 3, {false, 1.0}, a), pick_token(v.data(), 3, {false, 1.0}, b));
  EXPECT_EQ(prompt_seed(9, 0), 9u);
  EXPECT_NE(prompt_seed(9, 1), prompt_seed(9, 2));
}

}  // namespace
}  // namespace kimi::inference::engine
