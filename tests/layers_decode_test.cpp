// Decode-state and gradient checks of every registered mixer (suite LayersDecode), in float64 on
// small random layers: the whole sequence equals prefill + token-by-token decoding with the
// state, and equals two pieces; backward reaches every parameter; finite differences of
// d(sum(y * r))/dx at a few coordinates. Math of each layer: docs/math.md#mixers,
// docs/models.md#layers, docs/models.md#kimi-linear-48b.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/autograd/autograd.h"
#include "core/nn/module.h"
#include "core/ops/ops.h"
#include "models/language_model.h"
#include "models/mixer.h"
#include "tests/golden.h"

namespace kimi::models {
namespace {

// Small options per kind: K != V where the layer allows it, short chunks, GQA, groups.
std::vector<std::pair<std::string, MixerOptions>> cases() {
  std::vector<std::pair<std::string, MixerOptions>> out;
  for (const std::string& kind : mixer_kinds()) {
    MixerOptions o;
    o.kind = kind;
    o.d_model = 32, o.num_heads = 2, o.head_dim = 8, o.expand_v = 1.5, o.chunk_size = 4;
    o.dtype = DType::kF64;
    o.init_std = 0.2;  // larger weights than 0.02, so every path moves the output visibly
    if (kind == "gdn") o.output_gate = "swish";
    if (kind == "mamba2") o.expand = 1, o.d_state = 6, o.n_groups = 2;  // 4 heads over 2 groups
    if (kind == "attention") o.num_kv_heads = 1, o.rope = true;
    if (kind == "mla") o.kv_lora_rank = 12, o.q_lora_rank = 10, o.qk_rope_dim = 4, o.v_head_dim = 6;
    out.emplace_back(kind, o);
  }
  // Variants: FLA paths that are off by default here, Kimi Linear's plain NoPE MLA, and MLA with
  // its decoupled RoPE slice.
  MixerOptions kda;
  kda.kind = "kda", kda.d_model = 32, kda.num_heads = 2, kda.head_dim = 8, kda.chunk_size = 4;
  kda.dtype = DType::kF64, kda.init_std = 0.2, kda.short_conv = false, kda.output_gate = "none";
  out.emplace_back("kda_noconv_nogate", kda);
  // Table 1's swish-gate row: KDA's low-rank gate through silu instead of sigmoid.
  MixerOptions kda_swish = kda;
  kda_swish.short_conv = true, kda_swish.output_gate = "swish";
  out.emplace_back("kda_swish_gate", kda_swish);
  MixerOptions gdn = kda;
  gdn.kind = "gdn", gdn.short_conv = true, gdn.output_gate = "sigmoid",
  gdn.form = RecurrenceForm::kRecurrent;
  out.emplace_back("gdn_recurrent", gdn);
  MixerOptions mla = kda;
  mla.kind = "mla", mla.kv_lora_rank = 16;
  out.emplace_back("mla_nope", mla);
  // DeepSeek-V2's decoupled RoPE: decoding must continue the positions from the latent cache.
  MixerOptions mla_rope = mla;
  mla_rope.qk_rope_dim = 6, mla_rope.rope = true, mla_rope.q_lora_rank = 10;
  out.emplace_back("mla_rope", mla_rope);
  MixerOptions att = kda;
  att.kind = "attention";
  out.emplace_back("attention_mha", att);
  return out;
}

Tensor random_tensor(const Shape& s, uint64_t seed) {
  Rng rng(seed);
  return nn::randn(s, rng, 1.0, DType::kF64);
}

double rel(const Tensor& a, const Tensor& b) {
  return test::rel_err(a.to_vector<double>(), b.to_vector<double>());
}

// Runs x [B,T,d] through the layer in pieces of the given lengths, with one state.
Tensor run_in_pieces(Mixer& m, const Tensor& x, const std::vector<int64_t>& lengths) {
  auto state = m.new_state(x.size(0));
  std::vector<Tensor> ys;
  int64_t t0 = 0;
  for (int64_t len : lengths) {
    ys.push_back(m.forward(x.narrow(1, t0, len), state.get()));
    t0 += len;
  }
  EXPECT_EQ(t0, x.size(1));
  return concat(ys, 1);
}

TEST(LayersDecode, RegistryKnowsAllKinds) {
  const std::vector<std::string> want = {"attention", "deltanet", "gdn", "kda", "mamba2", "mla"};
  EXPECT_EQ(mixer_kinds(), want);
  MixerOptions o;
  o.kind = "nope";
  Rng rng(0);
  try {
    make_mixer(o, rng);
    FAIL() << "unknown kind accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("kda"), std::string::npos) << e.what();
  }
}

TEST(LayersDecode, PiecesEqualWhole) {
  NoGradGuard no_grad;
  const int64_t B = 2, T = 13;
  for (auto& [name, opt] : cases()) {
    Rng rng(7);
    auto m = make_mixer(opt, rng);
    Tensor x = random_tensor({B, T, opt.d_model}, 11);
    Tensor whole = m->forward(x);
    std::vector<int64_t> decode = {5};
    for (int64_t t = 5; t < T; ++t) decode.push_back(1);
    const double e_decode = rel(run_in_pieces(*m, x, decode), whole);
    const double e_split = rel(run_in_pieces(*m, x, {6, 7}), whole);
    EXPECT_LT(e_decode, 1e-10) << name << " prefill 5 + decode";
    EXPECT_LT(e_split, 1e-10) << name << " pieces 6 + 7";
    std::cout << fmt::format("[LayersDecode] {:<18} prefill+decode {:.1e}  6+7 {:.1e}\n", name,
                             e_decode, e_split);
  }
}

TEST(LayersDecode, BackwardReachesEveryParameter) {
  for (auto& [name, opt] : cases()) {
    Rng rng(3);
    auto m = make_mixer(opt, rng);
    Tensor x = random_tensor({2, 9, opt.d_model}, 5);
    x.set_requires_grad(true);
    Tensor y = m->forward(x);
    sum(y * random_tensor(y.shape(), 6)).backward();
    for (auto& [pname, p] : m->named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name << " " << pname << ": no gradient";
      double mx = 0;
      bool finite = true;
      for (double v : p.grad().to_vector<double>())
        finite &= std::isfinite(v), mx = std::max(mx, std::abs(v));
      EXPECT_TRUE(finite) << name << " " << pname;
      EXPECT_GT(mx, 0) << name << " " << pname << ": all-zero gradient";
    }
    ASSERT_TRUE(x.grad().defined()) << name;
  }
}

// Central differences of L = sum(y * r) at a few coordinates of x.
TEST(LayersDecode, FiniteDifferenceDx) {
  const int64_t B = 1, T = 6;
  for (auto& [name, opt] : cases()) {
    Rng rng(9);
    auto m = make_mixer(opt, rng);
    Tensor x0 = random_tensor({B, T, opt.d_model}, 21);
    Tensor r = random_tensor({B, T, opt.d_model}, 22);
    Tensor x = x0.clone();
    x.set_requires_grad(true);
    sum(m->forward(x) * r).backward();
    const std::vector<double> analytic = x.grad().to_vector<double>();
    NoGradGuard no_grad;
    auto loss = [&](int64_t i, double delta) {
      Tensor xp = x0.clone();
      xp.data<double>()[i] += delta;
      return sum(m->forward(xp) * r).item();
    };
    Rng pick(31);
    const double eps = 1e-5;
    for (int k = 0; k < 6; ++k) {
      const int64_t i = static_cast<int64_t>(pick.below(static_cast<uint64_t>(x0.numel())));
      const double numeric = (loss(i, eps) - loss(i, -eps)) / (2 * eps);
      EXPECT_NEAR(analytic[i], numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
          << name << " coordinate " << i;
    }
  }
}

// A whole model with MoE feed-forward layers (routing is per token, so a decoded token must pick
// the experts and weights it picks in the whole sequence) and MLA layers, NoPE and with the RoPE
// slice: prefill 4 + token-by-token decoding equals the whole-sequence logits.
TEST(LayersDecode, MoeModelPrefillDecodeEqualsWhole) {
  NoGradGuard no_grad;
  for (const bool mla_rope : {false, true}) {
    ModelConfig c;
    c.d_model = 24, c.n_layers = 3, c.mixer = {"kda", "mla", "mla"}, c.num_heads = 2;
    c.head_dim = 8, c.chunk_size = 4, c.kv_lora_rank = 10, c.mlp = true, c.init_std = 0.3;
    c.rope = mla_rope, c.qk_rope_dim = mla_rope ? 4 : 0;
    c.moe.num_experts = 5, c.moe.top_k = 2, c.moe.expert_hidden = 12, c.moe.first_dense = 1;
    c.moe.routed_scaling_factor = 2.0;
    LanguageModel model(c, 17, 4, DType::kF64);
    const int64_t B = 2, T = 11;
    std::vector<int32_t> ids(B * T);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 5 + 2) % 17);
    Tensor id = Tensor::from_vector(ids, {B, T});
    Tensor whole = model.forward(id);
    ModelState state = model.new_state(B);
    std::vector<Tensor> pieces = {model.forward(id.narrow(1, 0, 4), &state)};
    for (int64_t t = 4; t < T; ++t) pieces.push_back(model.forward(id.narrow(1, t, 1), &state));
    const double err = rel(concat(pieces, 1), whole);
    EXPECT_LT(err, 1e-10) << (mla_rope ? "mla rope" : "mla nope");
    ASSERT_EQ(model.layer_kinds().size(), 3u);
    std::cout << fmt::format("[LayersDecode] moe model, mla {}: prefill+decode {:.1e}\n",
                             mla_rope ? "rope" : "nope", err);
  }
}

}  // namespace
}  // namespace kimi::models
