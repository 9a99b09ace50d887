// The decode engine on the GPU (kimi_cuda_engine_test): kimi_tiny's reference logits through the
// bf16 engine (prefill = token-by-token decode of the prompt, both sequences batched), batched
// decode of sequences at different lengths equal to one-by-one decoding, and the whole engine
// (fused KDA step, MLA latent decode, device MoE routing, grouped expert GEMV) against the f32
// reference model (models/kimi_linear.*) with the same bf16-rounded weights on a config of odd
// sizes (no dimension a multiple of 8: the kernels' scalar paths). Skips without a GPU.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <numeric>

#include "core/autograd/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/tensor/error.h"
#include "inference/engine/decode_engine.h"
#include "models/kimi_linear.h"
#include "tests/golden.h"

namespace kimi::inference::engine {
namespace {

std::unique_ptr<DecodeEngine> engine_or_skip(const WeightLayout& l) {
  try {
    return make_decode_engine(l);
  } catch (const UserError& e) {
    if (std::string(e.what()).find("no CUDA device") != std::string::npos) return nullptr;
    throw;
  }
}

#define ENGINE_OR_SKIP(var, layout)  \
  auto var = engine_or_skip(layout); \
  if (!var) GTEST_SKIP() << "no CUDA device";

// Token-by-token decode of ids [B, T] (row-major) in slots 0..B-1 together -> logits [B, T, V].
std::vector<float> decode_all(DecodeEngine& e, const std::vector<int64_t>& ids, int B, int T) {
  const int64_t V = e.layout().config.vocab_size;
  std::vector<float> out(static_cast<size_t>(B) * T * V), step;
  std::vector<int32_t> slots(B), tokens(B);
  std::iota(slots.begin(), slots.end(), 0);
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) tokens[b] = static_cast<int32_t>(ids[b * T + t]);
    e.step(slots, tokens, &step);
    for (int b = 0; b < B; ++b)
      std::copy(step.begin() + b * V, step.begin() + (b + 1) * V,
                out.begin() + (static_cast<int64_t>(b) * T + t) * V);
  }
  return out;
}

TEST(Engine, TinyLogitsMatchTheReference) {
  KIMI_SKIP_WITHOUT_GOLDEN("kimi_tiny/model.safetensors");
  const std::string dir = test::golden_path("kimi_tiny");
  const WeightLayout l = make_weight_layout(models::load_kimi_linear_config(dir + "/config.json"));
  ENGINE_OR_SKIP(e, l);
  e->load_hf(dir);
  test::GoldenFile ref("kimi_tiny/reference.safetensors");
  const std::vector<int64_t> ids = ref.file().read_i64("input_ids");
  const test::GoldenTensor logits = ref.get("logits");
  const int B = 2, T = 80;
  e->allocate_slots(B, T);
  const std::vector<float> got = decode_all(*e, ids, B, T);
  const double err = test::rel_err(got, logits.data);
  std::printf("engine kimi_tiny, bf16, 2 sequences x 80 tokens decoded: rel err %.3g\n", err);
  EXPECT_LT(err, 2e-2);
  EXPECT_EQ(e->length(0), T);
}

// A hybrid of odd sizes: KDA head_dim 12 (3 heads), MLA rank 20 + rope 6, d 60, 6 experts top-3.
models::KimiLinearConfig odd_config() {
  models::KimiLinearConfig c;
  c.vocab_size = 53, c.hidden_size = 60, c.num_hidden_layers = 4;
  c.num_attention_heads = 3, c.head_dim = 10, c.intermediate_size = 44;
  c.kv_lora_rank = 20, c.q_lora_rank = 0, c.qk_nope_head_dim = 10, c.qk_rope_head_dim = 6;
  c.v_head_dim = 14;
  c.kda_head_dim = 12, c.kda_num_heads = 3, c.short_conv_kernel_size = 4;
  c.kda_layers = {1, 2, 4}, c.full_attn_layers = {3};
  c.num_experts = 6, c.num_experts_per_token = 3, c.num_shared_experts = 1;
  c.moe_intermediate_size = 18, c.first_k_dense_replace = 1;
  c.routed_scaling_factor = 2.446;
  return c;
}

TEST(Engine, OddSizesMatchTheF32ReferenceModel) {
  for (bool all_mla : {false, true}) {
    const models::KimiLinearConfig c = all_mla ? models::all_mla_twin(odd_config()) : odd_config();
    const WeightLayout l = make_weight_layout(c);
    ENGINE_OR_SKIP(e, l);
    e->init_random(7);
    // The reference model gets the engine's (bf16-rounded) weights, by name.
    models::KimiLinearModel m(c, DType::kF32);
    std::map<std::string, Tensor> params;
    for (auto& [n, t] : m.named_parameters()) params.emplace(n, t);
    for (const WeightEntry& w : l.entries) {
      Tensor& p = params.at(models::hf_to_kimi_name(w.name));
      const std::vector<float> v = e->read_weight(w);
      p.copy_(Tensor::from_vector(v, p.shape()));
    }
    const int B = 2, T = 12;
    std::vector<int64_t> ids(B * T);
    for (int i = 0; i < B * T; ++i) ids[i] = (i * 17 + 5) % c.vocab_size;
    e->allocate_slots(B, T);
    const std::vector<float> got = decode_all(*e, ids, B, T);
    models::KimiLinearState st = m.new_state(B);
    std::vector<double> want;
    {
      NoGradGuard ng;
      Tensor x = Tensor::from_vector(ids, {B, T});
      Tensor out = m.forward(x, &st);  // [B, T, V]
      want = out.to_vector<double>();
    }
    const double err = test::rel_err(got, want);
    std::printf("engine odd sizes (%s) vs f32 model: rel err %.3g\n",
                all_mla ? "all-MLA" : "hybrid", err);
    EXPECT_LT(err, 2e-2);
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

TEST(Engine, RefusesFullSlotsAndBadTokens) {
  const WeightLayout l = make_weight_layout(odd_config());
  ENGINE_OR_SKIP(e, l);
  e->init_random(1);
  e->allocate_slots(1, 2);
  e->step({0}, {1}, nullptr);
  e->step({0}, {1}, nullptr);
  EXPECT_THROW(e->step({0}, {1}, nullptr), UserError);
  e->reset();
  EXPECT_THROW(e->step({0}, {999}, nullptr), UserError);
  EXPECT_THROW(e->step({0, 0}, {1, 1}, nullptr), UserError);
}

}  // namespace
}  // namespace kimi::inference::engine
