// models/flops.h against hand counts on tiny configs and against the parameters of built models.
#include "models/flops.h"

#include <gtest/gtest.h>

#include "models/language_model.h"

namespace kimi::models {
namespace {

ModelConfig tiny(const std::string& mixer) {
  ModelConfig m;
  m.d_model = 8;
  m.n_layers = 1;
  m.mixer = {mixer};
  m.num_heads = 2;
  m.head_dim = 4;
  m.chunk_size = 4;
  m.short_conv = false;
  m.mlp = false;
  return m;
}

TEST(Flops, AttentionStateIsTheKvCacheAtTheTrainingLength) {
  const ModelConfig m = tiny("attention");
  const MixerCost c = attention_cost(m, 16);
  // K and V for 16 tokens, 2 heads x 4 dims each: 2 * 16 * 2 * 4 = 256 floats = 1 KiB.
  EXPECT_EQ(c.state_elems, 256);
  EXPECT_EQ(c.state_bytes(), 1024);
  EXPECT_EQ(c.state_bytes(2), 512);  // bf16
  EXPECT_TRUE(c.grows_with_length);
  EXPECT_EQ(attention_cost(m, 32).state_elems, 512);
  // q, k, v, o: 4 maps of 8 x 8 = 256 params; 2 FLOPs each = 512, plus scores and p v:
  // 2 heads * 2 (qk^T, pv) * 2 FLOPs * 4 dims * (16 + 1) / 2 keys = 272.
  EXPECT_EQ(c.params, 256);
  EXPECT_DOUBLE_EQ(c.fwd_flops_per_token, 512 + 272);
}

TEST(Flops, DeltaRuleStateIsHeadsTimesKeyTimesValueWhateverTheLength) {
  const ModelConfig m = tiny("deltanet");
  const MixerCost c = deltanet_cost(m, 16);
  EXPECT_EQ(c.state_elems, 2 * 4 * 4);  // H K V
  EXPECT_EQ(deltanet_cost(m, 1024).state_elems, c.state_elems);
  EXPECT_FALSE(c.grows_with_length);
  // q, k, v, o (4 x 64) + o_norm (4) + b_proj (8 x 2).
  EXPECT_EQ(c.params, 4 * 64 + 4 + 16);
  ModelConfig conv = m;
  conv.short_conv = true;
  conv.conv_size = 4;
  // Three convolved channels groups (q, k, v: 24 channels) keep 3 past inputs each.
  EXPECT_EQ(deltanet_cost(conv, 16).conv_state_elems, 24 * 3);
  EXPECT_EQ(deltanet_cost(conv, 16).state_bytes(), (32 + 72) * 4);
}

TEST(Flops, ParameterCountsMatchTheBuiltModels) {
  for (const char* mixer : {"kda", "gdn", "deltanet", "mamba2", "attention"}) {
    ModelConfig m = tiny(mixer);
    m.short_conv = true;
    m.mlp = true;
    m.mamba2.d_state = 8;
    const LanguageModel model(m, 32, 0);
    EXPECT_EQ(model_cost(m, 32, 16).params, model.num_parameters()) << mixer;
  }
}

TEST(Flops, TrainingIsThreeForwardPasses) {
  const ModelCost c = model_cost(tiny("gdn"), 32, 16);
  EXPECT_DOUBLE_EQ(c.train_flops_per_token, 3 * c.fwd_flops_per_token);
  EXPECT_GT(c.fwd_flops_per_token, 0);
}

}  // namespace
}  // namespace kimi::models
