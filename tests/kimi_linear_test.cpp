// The Kimi-Linear hybrid (suite KimiLinear): the tiny Hugging Face checkpoint of
// tests/golden/kimi_tiny gives the reference logits (float64 HF composition) whole and by
// prefill + token-by-token decoding; MoE routing on a hand example and the gather / scatter
// forward against a dense sum; the full-size config (docs/models.md#kimi-linear-48b) and its sizes.
#include "models/kimi_linear.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/autograd/autograd.h"
#include "core/io/tensor_io.h"
#include "core/ops/ops.h"
#include "tests/golden.h"

namespace kimi::models {
namespace {

#define KIMI_SKIP_WITHOUT_TINY() KIMI_SKIP_WITHOUT_GOLDEN("kimi_tiny/model.safetensors")

struct Reference {
  Tensor ids;  // int64 [2, 80]
  test::GoldenTensor logits;
};

Reference load_reference() {
  test::GoldenFile f("kimi_tiny/reference.safetensors");
  Reference r;
  r.ids = Tensor::from_vector(f.file().read_i64("input_ids"), f.file().info("input_ids").shape);
  r.logits = f.get("logits");
  return r;
}

std::string tiny_dir() { return test::golden_path("kimi_tiny"); }

// f32: the README's 1e-5. f64: the reference's own float32 rounding (~3e-8) with margin; tight
// enough to catch, e.g., kv_a_layernorm with eps 1e-5 instead of 1e-6 (1.4e-6).
double tolerance(DType t) { return t == DType::kF64 ? 2e-7 : 1e-5; }

// Prefill of the first `prefill` tokens, then one token at a time; the logits concatenated.
Tensor prefill_then_decode(KimiLinearModel& model, const Tensor& ids, int64_t prefill) {
  KimiLinearState state = model.new_state(ids.size(0));
  std::vector<Tensor> pieces = {model.forward(ids.narrow(1, 0, prefill).contiguous(), &state)};
  for (int64_t t = prefill; t < ids.size(1); ++t)
    pieces.push_back(model.forward(ids.narrow(1, t, 1).contiguous(), &state));
  EXPECT_EQ(state.length, ids.size(1));
  return concat(pieces, 1);
}

class KimiLinearTiny : public ::testing::TestWithParam<DType> {};

TEST_P(KimiLinearTiny, WholeSequenceLogitsMatchReference) {
  KIMI_SKIP_WITHOUT_TINY();
  const Reference ref = load_reference();
  auto model = KimiLinearModel::from_pretrained(tiny_dir(), GetParam());
  Tensor logits = model->forward(ref.ids);
  EXPECT_EQ(logits.shape(), ref.logits.shape);
  const double err = test::rel_err(logits.to_vector<double>(), ref.logits.data);
  std::printf("kimi_tiny whole-sequence logits (%s): rel err %.3g\n",
              std::string(dtype_name(GetParam())).c_str(), err);
  EXPECT_LT(err, tolerance(GetParam()));
}

TEST_P(KimiLinearTiny, PrefillThenDecodeMatchesReference) {
  KIMI_SKIP_WITHOUT_TINY();
  const Reference ref = load_reference();
  auto model = KimiLinearModel::from_pretrained(tiny_dir(), GetParam());
  Tensor decoded = prefill_then_decode(*model, ref.ids, 50);
  const std::vector<double> got = decoded.to_vector<double>();
  const double err = test::rel_err(got, ref.logits.data);
  const double vs_whole = test::rel_err(got, model->forward(ref.ids).to_vector<double>());
  std::printf("kimi_tiny prefill 50 + decode 30 (%s): rel err %.3g vs reference, %.3g vs whole\n",
              std::string(dtype_name(GetParam())).c_str(), err, vs_whole);
  EXPECT_LT(err, tolerance(GetParam()));
  EXPECT_LT(vs_whole, tolerance(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(KimiLinear, KimiLinearTiny, ::testing::Values(DType::kF32, DType::kF64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// The tiny checkpoint rewritten as two bf16 shards with model.safetensors.index.json (the
// layout of the full-size release) loads and converts to f32. (Its logits are not compared to the
// reference: bf16 rounding of the weights alone moves this tiny model's logits by ~0.1 relative.)
TEST(KimiLinear, ShardedBf16CheckpointLoads) {
  KIMI_SKIP_WITHOUT_TINY();
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "kimi_linear_test_shards";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(tiny_dir() + "/config.json", dir / "config.json");
  std::map<std::string, Tensor> shard[2];
  std::string index = R"({"metadata": {}, "weight_map": {)";
  int i = 0;
  for (auto& [name, t] : io::load_tensors(tiny_dir() + "/model.safetensors")) {
    const int s = name.find("layers.2") != std::string::npos || name == "lm_head.weight";
    shard[s][name] = t.to(DType::kBF16);
    index += fmt::format("{}\"{}\": \"model-0000{}-of-00002.safetensors\"", i++ ? ", " : "", name,
                         s + 1);
  }
  io::save_tensors((dir / "model-00001-of-00002.safetensors").string(), shard[0]);
  io::save_tensors((dir / "model-00002-of-00002.safetensors").string(), shard[1]);
  std::ofstream(dir / "model.safetensors.index.json") << index << "}}";
  EXPECT_EQ(checkpoint_files(dir.string()).size(), 2u);
  // Every parameter is the single-file model's, rounded to bf16 (names mapped, A_log reshaped).
  auto sharded = KimiLinearModel::from_pretrained(dir.string());
  auto single = KimiLinearModel::from_pretrained(tiny_dir());
  const nn::NamedTensors got = sharded->named_parameters(), want = single->named_parameters();
  ASSERT_EQ(got.size(), want.size());
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].first, want[k].first);
    EXPECT_EQ(got[k].second.to_vector<float>(),
              want[k].second.to(DType::kBF16).to(DType::kF32).to_vector<float>())
        << got[k].first;
  }
  fs::remove_all(dir);
}

TEST(KimiLinear, TinyCacheUsageByLayerKind) {
  KIMI_SKIP_WITHOUT_TINY();
  auto model = KimiLinearModel::from_pretrained(tiny_dir());
  const KimiLinearConfig& c = model->config();
  KimiLinearState state = model->new_state(2);
  model->forward(Tensor::from_vector(std::vector<int32_t>(2 * 7, 5), {2, 7}), &state);
  const CacheUsage u = KimiLinearModel::cache_usage(state);
  const CacheSizes s = cache_sizes(c, 4, 4);  // f32 state and f32 latent
  EXPECT_EQ(u.kda_layers, 3);
  EXPECT_EQ(u.mla_layers, 1);
  EXPECT_EQ(u.kda_bytes, 2 * 3 * (s.kda_state_per_layer + s.kda_conv_per_layer));
  EXPECT_EQ(u.mla_bytes, 2 * 7 * s.mla_per_token_per_layer);
  EXPECT_EQ(s.mla_per_token_per_layer, (32 + 8) * 4);
}

TEST(KimiLinear, CheckpointNamesMapToFlaNames) {
  EXPECT_EQ(hf_to_kimi_name("model.layers.2.self_attn.f_a_proj.weight"),
            "model.layers.2.self_attn.f_proj.0.weight");
  EXPECT_EQ(hf_to_kimi_name("model.layers.2.self_attn.g_b_proj.weight"),
            "model.layers.2.self_attn.g_proj.1.weight");
  EXPECT_EQ(hf_to_kimi_name("model.layers.3.self_attn.kv_b_proj.weight"),
            "model.layers.3.self_attn.kv_b_proj.weight");
  EXPECT_THROW(checkpoint_files("/nonexistent/kimi"), UserError);
}

// Token 0: the bias moves expert 2 (score 0.1) above expert 1 (0.8); the weights use the
// unbiased scores 0.9 and 0.1, renormalised (sum 1.0), times 2. Token 1: no bias effect.
TEST(KimiLinear, MoeRoutingHandExample) {
  MoeOptions o;
  o.num_experts = 4, o.top_k = 2, o.routed_scaling_factor = 2.0;
  const std::vector<double> scores = {0.9, 0.8, 0.1, 0.5, 0.2, 0.3, 0.4, 0.6};
  const std::vector<double> bias = {0.0, -0.5, 0.6, 0.0};
  const Routing r = route_tokens(scores, bias, 2, o);
  // token 1: choice = scores + bias = 0.2, -0.2, 1.0, 0.6 -> experts 2 then 3 (0.4 + 0.6 = 1).
  EXPECT_EQ(r.expert, (std::vector<int64_t>{0, 2, 2, 3}));
  const std::vector<double> want = {2 * 0.9, 2 * 0.1, 2 * 0.4, 2 * 0.6};
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(r.weight[k], want[k], 1e-12) << k;
  // Group-limited: 2 groups of 2, one kept; group 1 (0.6 + 0.5) beats group 0 (0.9 + 0.1).
  o.num_groups = 2, o.topk_group = 1;
  const Routing g = route_tokens({0.9, 0.1, 0.6, 0.5}, {0, 0, 0, 0}, 1, o);
  EXPECT_EQ(g.expert, (std::vector<int64_t>{2, 3}));
  EXPECT_NEAR(g.weight[0], 2 * 0.6 / 1.1, 1e-12);
}

// The gathered per-expert forward equals sum_e w_e(x) expert_e(x) + shared(x) over all experts.
TEST(KimiLinear, MoeBlockMatchesDenseSum) {
  NoGradGuard no_grad;
  MoeOptions o;
  o.d_model = 12, o.num_experts = 6, o.top_k = 2, o.expert_hidden = 8, o.num_shared = 1;
  o.routed_scaling_factor = 2.446, o.dtype = DType::kF64, o.init_std = 0.3;
  Rng rng(7);
  SparseMoeBlock moe(o, rng);
  moe.gate->e_score_correction_bias.copy_(nn::randn({6}, rng, 0.1, DType::kF64));
  Tensor x = nn::randn({2, 5, 12}, rng, 1.0, DType::kF64);
  const Routing r = moe.route(x.reshape({10, 12}));
  std::vector<double> dense(10 * 6, 0.0);
  for (int64_t i = 0; i < 10 * 2; ++i) dense[(i / 2) * 6 + r.expert[i]] = r.weight[i];
  Tensor want = moe.shared_experts->forward(x);
  Tensor w = Tensor::from_vector(dense, {2, 5, 6});
  for (int64_t e = 0; e < 6; ++e) want = want + moe.experts[e]->forward(x) * w.narrow(2, e, 1);
  EXPECT_LT(test::rel_err(moe.forward(x).to_vector<double>(), want.to_vector<double>()), 1e-14);
}

// moonshotai/Kimi-Linear-48B-A3B-Instruct's config.json (the keys this code reads).
const char* kFullConfig = R"({
  "vocab_size": 163840, "hidden_size": 2304, "num_hidden_layers": 27,
  "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128,
  "intermediate_size": 9216, "rms_norm_eps": 1e-05, "kv_lora_rank": 512, "q_lora_rank": null,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "mla_use_nope": true,
  "linear_attn_config": {"head_dim": 128, "num_heads": 32, "short_conv_kernel_size": 4,
    "kda_layers": [1,2,3,5,6,7,9,10,11,13,14,15,17,18,19,21,22,23,25,26],
    "full_attn_layers": [4,8,12,16,20,24,27]},
  "num_experts": 256, "num_experts_per_token": 8, "num_shared_experts": 1,
  "moe_intermediate_size": 1024, "first_k_dense_replace": 1, "moe_layer_freq": 1,
  "moe_router_activation_func": "sigmoid", "moe_renormalize": true,
  "routed_scaling_factor": 2.446, "use_grouped_topk": true, "num_expert_group": 1,
  "topk_group": 1, "tie_word_embeddings": false, "torch_dtype": "bfloat16"})";

TEST(KimiLinear, FullSizeConfigParsesAndCounts) {
  const KimiLinearConfig c = parse_kimi_linear_config(kFullConfig, "config.json");
  const KimiLinearConfig p = kimi_linear_48b();
  std::vector<int64_t> mla;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    if (c.is_mla(i)) mla.push_back(i);
  EXPECT_EQ(mla, (std::vector<int64_t>{3, 7, 11, 15, 19, 23, 26}));
  EXPECT_EQ(c.num_hidden_layers, 27);
  EXPECT_EQ(c.q_lora_rank, 0);
  EXPECT_EQ(c.kda_layers, p.kda_layers);
  EXPECT_FALSE(c.is_moe(0));
  EXPECT_TRUE(c.is_moe(1) && c.is_moe(26));
  const ParameterCount n = parameter_count(c);
  EXPECT_EQ(n.total, parameter_count(p).total);
  // Counted from the module shapes: 49.12B (98.2 GB in bf16, docs/models.md#kimi-linear-48b's
  // "~98 GB"); the design notes round it to "about 48.9B".
  EXPECT_EQ(n.total, 49'122'681'728);
  EXPECT_NEAR(n.total / 1e9, 48.9, 0.3);
  EXPECT_NEAR(n.moe / 1e9, 47.2, 0.3);    // 26 MoE layers
  EXPECT_NEAR(n.active / 1e9, 3.0, 0.6);  // about 3B active per token
  const CacheSizes s = cache_sizes(c, 4, 2);
  EXPECT_EQ(s.kda_state_per_layer, 2 << 20);   // 2 MiB fp32 per KDA layer
  EXPECT_EQ(s.mla_per_token_per_layer, 1152);  // bf16 latent + rope slice
  EXPECT_NEAR(s.all_mla(1 << 20) / double(1 << 30), 30.4, 0.1);
  EXPECT_NEAR(1.0 - double(s.hybrid(1 << 20)) / s.all_mla(1 << 20), 0.74, 0.01);
}

TEST(KimiLinear, ConfigErrorsNameTheKey) {
  std::string bad = kFullConfig;
  bad.replace(bad.find("[4,8,12"), 7, "[8,12");  // layer 4 in neither list
  EXPECT_THROW(parse_kimi_linear_config(bad, "config.json"), UserError);
  try {
    parse_kimi_linear_config(R"({"vocab_size": 10})", "cfg.json");
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos) << e.what();
  }
}

// What bf16 weights alone cost on kimi_tiny: every parameter rounded to bf16 (round to nearest
// even), f32 arithmetic. Measured 0.10 overall (rows whose top-2 expert choice flips at a near
// tie up to 0.65): above the 2e-2 that issue 10 asked of the bf16 engine against the reference,
// which is why tests/cuda/engine_test.cpp holds the engine to this floor, measured there again,
// and to 2e-2 against the f32 model with the same bf16 weights.
TEST(KimiLinearTinyBf16, RoundedWeightsErrorAgainstTheReference) {
  KIMI_SKIP_WITHOUT_TINY();
  const Reference ref = load_reference();
  auto model = KimiLinearModel::from_pretrained(tiny_dir(), DType::kF32);
  for (Tensor& p : model->parameters()) {
    float* d = p.data<float>();
    for (int64_t i = 0; i < p.numel(); ++i) d[i] = bf16_to_float(float_to_bf16(d[i]));
  }
  const std::vector<double> got = model->forward(ref.ids).to_vector<double>();
  const double err = test::rel_err(got, ref.logits.data);
  const int64_t V = ref.logits.shape.back(), rows = static_cast<int64_t>(got.size()) / V;
  std::vector<double> per_row;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> a(got.begin() + r * V, got.begin() + (r + 1) * V);
    std::vector<double> b(ref.logits.data.begin() + r * V, ref.logits.data.begin() + (r + 1) * V);
    per_row.push_back(test::rel_err(a, b));
  }
  std::sort(per_row.begin(), per_row.end());
  std::printf(
      "kimi_tiny, bf16-rounded weights, f32 math: rel err %.3g; per row median %.3g, "
      "p90 %.3g, max %.3g\n",
      err, per_row[rows / 2], per_row[rows * 9 / 10], per_row.back());
  EXPECT_GT(err, 2e-2);  // if this fails, the engine test's floor argument no longer holds
  EXPECT_LT(err, 0.3);
}
}  // namespace
}  // namespace kimi::models
