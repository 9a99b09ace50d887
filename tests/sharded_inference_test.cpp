// Tensor- and expert-parallel inference of the Kimi-Linear hybrid (inference/parallel; issue 14),
// ranks as threads with their own TCP communicators: on every world size that divides the
// heads and experts, each rank's logits equal the unsharded model's within 1e-5 relative (whole
// sequence, prefill of 7 tokens for 2 sequences, then 3 decode steps) and equal each other
// bitwise; a rank holds the weights and caches shard_plan.h counts; a split that does not divide
// is refused with one line naming the config key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "inference/parallel/shard_plan.h"
#include "inference/parallel/sharded_kimi_linear.h"
#include "tests/dist_ranks.h"
#include "tests/golden.h"
#include "tests/user_error_message.h"

namespace kimi::inference {
namespace {

using models::KimiLinearConfig;
using models::KimiLinearModel;
using models::KimiLinearState;

constexpr int64_t kBatch = 2, kPrefill = 7, kSteps = 3;

// Every 7th id, from a different start per sequence: no two positions alike.
Tensor ids(int64_t from, int64_t len, int64_t vocab) {
  std::vector<int64_t> v;
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t t = from; t < from + len; ++t) v.push_back((7 * t + 3 * b + 1) % vocab);
  return Tensor::from_vector(v, {kBatch, len});
}

// What a rank (or the unsharded model) gives: the logits of the whole sequence without a cache,
// of the prefill, and of each decode step; the parameters and the cache after the prefill.
struct Run {
  std::vector<std::vector<float>> logits;
  int64_t parameters = 0;
  models::CacheUsage cache;
};

template <class Model>
Run run_script(Model& m, int64_t vocab) {
  Run run;
  run.logits.push_back(m.forward(ids(0, kPrefill + kSteps, vocab)).template to_vector<float>());
  KimiLinearState state = m.new_state(kBatch);
  run.logits.push_back(m.forward(ids(0, kPrefill, vocab), &state).template to_vector<float>());
  run.cache = KimiLinearModel::cache_usage(state);
  for (int64_t s = 0; s < kSteps; ++s)
    run.logits.push_back(
        m.forward(ids(kPrefill + s, 1, vocab), &state).template to_vector<float>());
  run.parameters = m.num_parameters();
  return run;
}

// max |a - b| over max |ref|, over all the pieces.
double rel_diff(const Run& got, const Run& ref) {
  double diff = 0, scale = 0;
  for (size_t p = 0; p < ref.logits.size(); ++p) {
    EXPECT_EQ(got.logits[p].size(), ref.logits[p].size());
    for (size_t i = 0; i < ref.logits[p].size(); ++i) {
      diff = std::max(diff, double(std::abs(got.logits[p][i] - ref.logits[p][i])));
      scale = std::max(scale, double(std::abs(ref.logits[p][i])));
    }
  }
  return diff / scale;
}

std::vector<Run> run_sharded(const KimiLinearModel& model, int world) {
  std::vector<Run> runs(static_cast<size_t>(world));
  const auto errors = dist::run_ranks(world, 30, [&](int r, dist::Communicator& comm) {
    ShardedKimiLinear sharded(model, comm);
    runs[size_t(r)] = run_script(sharded, model.config().vocab_size);
  });
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[size_t(r)], "") << "rank " << r;
  return runs;
}

// The sharded logits against the unsharded ones on every world in `worlds`, and a rank's
// weights and caches against the plan's counts.
void expect_shards_match(KimiLinearModel& model, std::initializer_list<int> worlds,
                         const char* name) {
  const KimiLinearConfig& c = model.config();
  const Run ref = run_script(model, c.vocab_size);
  for (int world : worlds) {
    const std::vector<Run> runs = run_sharded(model, world);
    const double rel = rel_diff(runs[0], ref);
    std::printf("%s, %d rank(s): max |sharded - unsharded| / max |logit| = %.3g\n", name, world,
                rel);
    EXPECT_LE(rel, 1e-5) << name << ", world " << world;
    for (size_t r = 1; r < runs.size(); ++r)
      for (size_t p = 0; p < ref.logits.size(); ++p)
        EXPECT_EQ(0, std::memcmp(runs[r].logits[p].data(), runs[0].logits[p].data(),
                                 ref.logits[p].size() * sizeof(float)))
            << name << ": rank " << r << " differs from rank 0 in piece " << p;
    // The plan counts HF's parameters: KDA's g_b_proj there has no bias, ours does.
    const KimiLinearConfig rc = rank_config(c, world);
    const int64_t kda_layers = c.num_hidden_layers - int64_t(c.full_attn_layers.size());
    EXPECT_EQ(runs[0].parameters, rank_parameter_count(c, world).total +
                                      kda_layers * rc.kda_num_heads * c.kda_head_dim);
    const models::CacheSizes sizes = rank_cache_sizes(c, world, 4, 4);
    EXPECT_EQ(runs[0].cache.kda_bytes,
              kBatch * sizes.num_kda * (sizes.kda_state_per_layer + sizes.kda_conv_per_layer));
    EXPECT_EQ(runs[0].cache.mla_bytes,
              kBatch * sizes.num_mla * sizes.mla_per_token_per_layer * kPrefill);
  }
}

// Six heads and experts (worlds 1, 2, 3), both mixers, a dense first layer, the q low-rank path,
// group-limited routing and tied embeddings: the paths kimi_tiny does not take.
KimiLinearConfig six_head_config() {
  KimiLinearConfig c;
  c.vocab_size = 64, c.hidden_size = 48, c.num_hidden_layers = 4;
  c.num_attention_heads = 6, c.head_dim = 8, c.intermediate_size = 36;
  c.kv_lora_rank = 16, c.q_lora_rank = 12;
  c.qk_nope_head_dim = 8, c.qk_rope_head_dim = 4, c.v_head_dim = 8;
  c.kda_head_dim = 8, c.kda_num_heads = 6, c.short_conv_kernel_size = 4;
  c.kda_layers = {1, 3}, c.full_attn_layers = {2, 4};
  c.num_experts = 6, c.num_experts_per_token = 2, c.num_shared_experts = 1;
  c.moe_intermediate_size = 12, c.first_k_dense_replace = 1;
  c.routed_scaling_factor = 2.446, c.num_expert_group = 2, c.topk_group = 1;
  c.tie_word_embeddings = true;
  return c;
}

TEST(ShardedKimiLinear, TinyCheckpointMatchesUnshardedOn1And2And4Ranks) {
  KIMI_REQUIRE_GOLDEN("kimi_tiny/model.safetensors");
  auto model = KimiLinearModel::from_pretrained(test::golden_path("kimi_tiny"));
  expect_shards_match(*model, {1, 2, 4}, "kimi_tiny");
}

TEST(ShardedKimiLinear, SixHeadRandomModelMatchesUnshardedOn1And2And3Ranks) {
  KimiLinearModel model(six_head_config(), DType::kF32, 7);
  expect_shards_match(model, {1, 2, 3}, "six-head random model");
}

TEST(ShardedKimiLinear, SplitThatDoesNotDivideIsOneLineNamingTheKey) {
  KIMI_REQUIRE_GOLDEN("kimi_tiny/model.safetensors");
  auto model = KimiLinearModel::from_pretrained(test::golden_path("kimi_tiny"));
  // Every rank refuses before any collective, with the same line.
  const auto errors = dist::run_ranks(
      3, 30, [&](int, dist::Communicator& comm) { ShardedKimiLinear sharded(*model, comm); });
  for (const std::string& e : errors) {
    EXPECT_EQ(e, errors[0]);
    EXPECT_NE(e.find("linear_attn_config.num_heads = 4 does not split over 3 ranks"),
              std::string::npos)
        << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  KimiLinearConfig c = six_head_config();
  auto refused = [&](int world) {
    return test_util::message_of([&] { check_shardable(c, world); });
  };
  EXPECT_EQ(refused(6), "(no UserError)");
  c.kda_num_heads = 10;
  EXPECT_NE(refused(4).find("linear_attn_config.num_heads = 10 does not split over 4"),
            std::string::npos);
  c = six_head_config(), c.num_attention_heads = 4;
  EXPECT_NE(refused(3).find("num_attention_heads = 4"), std::string::npos);
  c = six_head_config(), c.num_experts = 4;
  EXPECT_NE(refused(3).find("num_experts = 4"), std::string::npos);
  c = six_head_config(), c.intermediate_size = 32;
  EXPECT_NE(refused(3).find("intermediate_size = 32"), std::string::npos);
  EXPECT_NE(refused(0).find("world size 0"), std::string::npos);
}

// Kimi-Linear-48B-A3B per rank (README "Several GPUs" quotes the printed line): the split parts
// shrink by the world size, the replicated ones (embedding, head, norms, router) do not.
TEST(ShardPlan, FullSizeModelPerRank) {
  const KimiLinearConfig c = models::kimi_linear_48b();
  const RankParameters one = rank_parameter_count(c, 1);
  EXPECT_EQ(one.total, models::parameter_count(c).total);
  for (int world : {1, 2, 4, 8}) {
    const RankParameters p = rank_parameter_count(c, world);
    EXPECT_EQ(p.routed_experts * world, one.routed_experts);
    EXPECT_EQ(p.shared_experts * world, one.shared_experts);
    EXPECT_EQ(p.dense_mlp * world, one.dense_mlp);
    EXPECT_EQ(p.embedding + p.lm_head + p.norms + p.router,
              one.embedding + one.lm_head + one.norms + one.router);
    if (world > 1) EXPECT_GT(p.kda * world, one.kda);  // f_proj.0, g_proj.0, o_norm: shared
    // bf16 weights; fp32 KDA state, bf16 MLA latent (the engine's dtypes), one sequence.
    const models::CacheSizes s = rank_cache_sizes(c, world, 4, 2);
    const double gib = 1024.0 * 1024 * 1024;
    std::printf(
        "48B on %d rank(s), per rank: %.2f G parameters = %.1f GiB bf16; cache of one "
        "sequence: KDA %.1f MiB + MLA latent %.1f KiB/token (all %.2f GiB at 128K tokens)\n",
        world, double(p.total) / 1e9, 2.0 * double(p.total) / gib,
        double(s.hybrid(0)) / (1024.0 * 1024), double(s.hybrid(1) - s.hybrid(0)) / 1024,
        double(s.hybrid(131072)) / gib);
  }
  const models::CacheSizes full = rank_cache_sizes(c, 1, 4, 2),
                           eighth = rank_cache_sizes(c, 8, 4, 2);
  EXPECT_EQ(eighth.mla_per_token_per_layer, full.mla_per_token_per_layer);  // replicated
  EXPECT_EQ(eighth.kda_state_per_layer * 8, full.kda_state_per_layer);      // split by heads
}

}  // namespace
}  // namespace kimi::inference
