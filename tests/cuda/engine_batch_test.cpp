// The decode engine's batches on the GPU (part of kimi_cuda_engine_test): the tensor-core batch
// path against the GEMV and one-by-one decoding, slots at different lengths batched against
// one by one, and the issue-10 kernels (gemv_split, moe_route_fused, moe_combine_norm) against
// the ones they replace (KIMI_ENGINE_GEMV=v1, KIMI_ENGINE_ROUTING=old, KIMI_ENGINE_NORM=old)
// through the whole step. Skips without a GPU.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/cuda/engine_test_util.h"

namespace kimi::inference::engine {
namespace {

using etest::decode_mixed;
using etest::engine_or_skip;
using etest::EnvGuard;
using etest::odd_config;
using etest::row_errs;

// The odd config with every width a multiple of 8 (the kernels' 16-byte paths).
void make_aligned(models::KimiLinearConfig& c) {
  c.hidden_size = 64, c.intermediate_size = 48, c.moe_intermediate_size = 24;
  c.kda_head_dim = 16, c.kv_lora_rank = 24, c.qk_nope_head_dim = 16, c.qk_rope_head_dim = 8;
  c.v_head_dim = 16, c.head_dim = 16, c.vocab_size = 64;
}

// The batch-size switch (KIMI_ENGINE_GEMV unset: tensor-core GEMMs above 8 rows) against the
// GEMV (KIMI_ENGINE_GEMV=old) and against each slot decoded alone (batch 1: the GEMV either
// way), at B = 9, 17, 64 of slots at different lengths, on the odd sizes (scalar loads) and an
// aligned twin (16-byte loads). Only the order of fp32 sums differs (and with it, now and then,
// a bf16 rounding of an activation), so with dense routing (every expert chosen, nothing can
// flip) every row of logits must agree to 5e-3; with top-3 of 6 a near-tie may pick another
// expert and move that slot's later rows, so there the median row must agree to 1e-3 and 90%
// of the rows to 5e-3. A wrong row, slot or accumulate moves rows by O(1).
TEST(Engine, TensorCoreBatchesEqualTheGemvAndOneByOne) {
  for (bool aligned : {false, true})
    for (bool dense : {true, false}) {
      models::KimiLinearConfig c = odd_config();
      if (aligned) make_aligned(c);
      if (dense) c.num_experts_per_token = c.num_experts;
      const WeightLayout l = make_weight_layout(c);
      std::unique_ptr<DecodeEngine> fresh, old;
      {
        EnvGuard g("KIMI_ENGINE_GEMV", nullptr);
        fresh = engine_or_skip(l);
      }
      {
        EnvGuard g("KIMI_ENGINE_GEMV", "old");
        old = engine_or_skip(l);
      }
      if (!fresh || !old) GTEST_SKIP() << "no CUDA device";
      fresh->init_random(5), old->init_random(5);
      const int64_t V = c.vocab_size;
      const int steps = 3;
      fresh->allocate_slots(64, 8), old->allocate_slots(64, 8);
      for (int B : {9, 17, 64}) {
        std::vector<float> got, gemv, alone;
        decode_mixed(*fresh, B, steps, &got, false);
        decode_mixed(*old, B, steps, &gemv, false);
        decode_mixed(*fresh, B, steps, &alone, true);
        for (const auto& [name, want] :
             {std::pair<const char*, const std::vector<float>*>{"the GEMV", &gemv},
              {"one by one", &alone}}) {
          const std::vector<double> e = row_errs(got, *want, V);
          const double median = e[e.size() / 2], p90 = e[e.size() * 9 / 10], worst = e.back();
          std::printf("engine %s%s B %d vs %s: row errs median %.2g, 90%% %.2g, max %.2g\n",
                      aligned ? "aligned" : "odd", dense ? " dense routing" : " top-3", B, name,
                      median, p90, worst);
          if (dense) {
            EXPECT_LT(worst, 5e-3) << "B " << B << " vs " << name;
          } else {
            EXPECT_LT(median, 1e-3) << "B " << B << " vs " << name;
            EXPECT_LT(p90, 5e-3) << "B " << B << " vs " << name;
          }
        }
      }
    }
}

// KIMI_ENGINE_MLA_SPLITS_PER_SM (a measurement knob; unset, engine/mla_splits.h's rule gives 1
// per SM at B = 2) changes only how the MLA attend splits each cache: 66, 132 and 256 splits
// (N = 1, 2, 8 at B = 2 over 8,192-token slots; the length caps N = 8) give the rule's logits
// up to the order of the merge's fp32 sums. Dense
// routing, so no near-tie can pick another expert. A value outside 1..8 is refused by name.
TEST(Engine, MlaSplitsPerSmChangesNoLogit) {
  models::KimiLinearConfig c = odd_config();
  c.num_experts_per_token = c.num_experts;
  const WeightLayout l = make_weight_layout(c);
  const int B = 2, T = 40;
  std::vector<int64_t> ids(B * T);
  for (int i = 0; i < B * T; ++i) ids[i] = (i * 37 + 5) % c.vocab_size;
  std::vector<std::vector<float>> logits;
  for (const char* n : {"", "1", "2", "8"}) {
    std::unique_ptr<DecodeEngine> e;
    {
      EnvGuard g("KIMI_ENGINE_MLA_SPLITS_PER_SM", n);
      e = engine_or_skip(l);
    }
    if (!e) GTEST_SKIP() << "no CUDA device";
    e->init_random(7);
    e->allocate_slots(B, 8192);
    logits.push_back(etest::decode_all(*e, ids, B, T));
  }
  for (size_t k = 1; k < logits.size(); ++k) {
    const std::vector<double> err = row_errs(logits[k], logits[0], c.vocab_size);
    const char* n = k == 1 ? "1" : k == 2 ? "2" : "8";
    std::printf("engine MLA splits per SM %s vs the default: row errs max %.2g\n", n, err.back());
    EXPECT_LT(err.back(), 5e-3) << "splits per SM " << n;
  }
  EnvGuard bad("KIMI_ENGINE_MLA_SPLITS_PER_SM", "0");
  try {
    engine_or_skip(l);
    ADD_FAILURE() << "KIMI_ENGINE_MLA_SPLITS_PER_SM=0 was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("KIMI_ENGINE_MLA_SPLITS_PER_SM"), std::string::npos)
        << e.what();
  }
}

// Slots at different lengths decoded together give what each gives alone.
TEST(Engine, BatchedDecodeOfDifferentLengthsEqualsOneByOne) {
  const models::KimiLinearConfig c = odd_config();
  const WeightLayout l = make_weight_layout(c);
  ENGINE_OR_SKIP(e, l);
  e->init_random(3);
  const int S = 4, joint = 5;
  const int prefix[S] = {1, 6, 3, 9};
  auto token = [&](int s, int t) {
    return static_cast<int32_t>((s * 31 + t * 7 + 2) % c.vocab_size);
  };
  e->allocate_slots(S, 16);
  const int64_t V = c.vocab_size;
  // Alone: each slot's prefix, then its `joint` tokens, batch 1.
  std::vector<std::vector<float>> alone(S);
  std::vector<float> lg;
  for (int s = 0; s < S; ++s)
    for (int t = 0; t < prefix[s] + joint; ++t) {
      e->step({s}, {token(s, t)}, &lg);
      if (t >= prefix[s]) alone[s].insert(alone[s].end(), lg.begin(), lg.end());
    }
  e->reset();
  for (int s = 0; s < S; ++s)
    for (int t = 0; t < prefix[s]; ++t) e->step({s}, {token(s, t)}, nullptr);
  const std::vector<int32_t> order = {2, 0, 3, 1};  // rows in another order than the slots
  std::vector<std::vector<float>> together(S);
  for (int j = 0; j < joint; ++j) {
    std::vector<int32_t> toks;
    for (int32_t s : order) toks.push_back(token(s, prefix[s] + j));
    e->step(order, toks, &lg);
    for (size_t r = 0; r < order.size(); ++r)
      together[order[r]].insert(together[order[r]].end(), lg.begin() + r * V,
                                lg.begin() + (r + 1) * V);
  }
  for (int s = 0; s < S; ++s) {
    const double err = test::rel_err(together[s], alone[s]);
    // Only the MLA split count depends on the batch (it changes the order of a sum).
    EXPECT_LT(err, 1e-5) << "slot " << s;
    EXPECT_EQ(e->length(s), prefix[s] + joint);
  }
  // The graph-timed path runs and advances the lengths.
  const double ms = e->time_steps_ms(2, 1, 2);
  EXPECT_GT(ms, 0);
  EXPECT_EQ(e->length(0), prefix[0] + joint + 3);
  EXPECT_GT(e->distinct_experts_last_step(), 0);
}

// The issue-10 kernels (gemv_split and expert_gemv_split, moe_route_fused, moe_combine_norm with
// the shared expert added before the routed sum, the KDA update split over value columns: the
// odd configs' 3 heads always split) against the session-14 step (KIMI_ENGINE_GEMV=v1
// KIMI_ENGINE_ROUTING=old KIMI_ENGINE_NORM=old KIMI_ENGINE_KDA=old) and against each slot alone, at
// B = 1, 3, 8 (the GEMV's batches), odd and aligned widths, dense and top-3 routing. The bounds are
// those of TensorCoreBatchesEqualTheGemvAndOneByOne (only sum orders differ); the fused routing
// picks the same experts as the old kernels from the same input (its own test checks that bit for
// bit), so flips come from the inputs' last bits alone.
TEST(Engine, FusedDecodeKernelsEqualTheOldOnesAndOneByOne) {
  for (bool aligned : {false, true})
    for (bool dense : {true, false}) {
      models::KimiLinearConfig c = odd_config();
      if (aligned) make_aligned(c);
      if (dense) c.num_experts_per_token = c.num_experts;
      const WeightLayout l = make_weight_layout(c);
      std::unique_ptr<DecodeEngine> fresh, old;
      {
        EnvGuard g("KIMI_ENGINE_GEMV", "split"), r("KIMI_ENGINE_ROUTING", nullptr),
            n("KIMI_ENGINE_NORM", nullptr), k("KIMI_ENGINE_KDA", nullptr);
        fresh = engine_or_skip(l);
      }
      {
        EnvGuard g("KIMI_ENGINE_GEMV", "v1"), r("KIMI_ENGINE_ROUTING", "old"),
            n("KIMI_ENGINE_NORM", "old"), k("KIMI_ENGINE_KDA", "old");
        old = engine_or_skip(l);
      }
      if (!fresh || !old) GTEST_SKIP() << "no CUDA device";
      fresh->init_random(5), old->init_random(5);
      const int64_t V = c.vocab_size;
      const int steps = 4;
      fresh->allocate_slots(8, 8), old->allocate_slots(8, 8);
      for (int B : {1, 3, 8}) {
        std::vector<float> got, was, alone;
        decode_mixed(*fresh, B, steps, &got, false);
        decode_mixed(*old, B, steps, &was, false);
        decode_mixed(*fresh, B, steps, &alone, true);
        for (const auto& [name, want] :
             {std::pair<const char*, const std::vector<float>*>{"the old kernels", &was},
              {"one by one", &alone}}) {
          const std::vector<double> e = row_errs(got, *want, V);
          const double median = e[e.size() / 2], p90 = e[e.size() * 9 / 10], worst = e.back();
          std::printf(
              "engine fused kernels %s%s B %d vs %s: row errs median %.2g, 90%% %.2g, "
              "max %.2g\n",
              aligned ? "aligned" : "odd", dense ? " dense routing" : " top-3", B, name, median,
              p90, worst);
          if (dense) {
            EXPECT_LT(worst, 5e-3) << "B " << B << " vs " << name;
          } else {
            EXPECT_LT(median, 1e-3) << "B " << B << " vs " << name;
            EXPECT_LT(p90, 5e-3) << "B " << B << " vs " << name;
          }
        }
      }
    }
}

}  // namespace
}  // namespace kimi::inference::engine
