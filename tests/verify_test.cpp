// `kimi-lab verify` on files of the golden layout made with other shapes (B=1, T=37, H=3,
// K=20, V=12; a kda_layer of hidden 24) and another seed: references come from the float64
// recurrent forms, and verify must run both forms in float32 on whatever shapes it finds.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/io/tensor_io.h"
#include "core/nn/module.h"
#include "core/ops/mixer_ops.h"
#include "core/ops/ops.h"
#include "models/golden_verify.h"
#include "models/mixer.h"

namespace kimi {
namespace {

using TensorMap = std::map<std::string, Tensor>;

Tensor leaf(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

void add_recurrence(TensorMap* out, const std::string& prefix, GateKind gate, bool delta,
                    Rng& rng) {
  const int64_t B = 1, T = 37, H = 3, K = 20, V = 12;
  Tensor q = leaf(nn::randn({B, T, H, K}, rng, 1.0, DType::kF64));
  Tensor k = leaf(l2_norm(nn::randn({B, T, H, K}, rng, 1.0, DType::kF64)).detach());
  Tensor v = leaf(nn::randn({B, T, H, V}, rng, 1.0, DType::kF64));
  Shape gshape = gate == GateKind::kPerChannel ? Shape{B, T, H, K} : Shape{B, T, H};
  Tensor g = gate == GateKind::kNone
                 ? Tensor()
                 : leaf(nn::rand_uniform(gshape, rng, -0.3, -0.01, DType::kF64));
  Tensor beta = delta ? leaf(nn::rand_uniform({B, T, H}, rng, 0.05, 0.95, DType::kF64)) : Tensor();
  Tensor h0 = leaf(nn::randn({B, H, K, V}, rng, 1.0, DType::kF64));
  Tensor d_o = nn::randn({B, T, H, V}, rng, 1.0, DType::kF64),
         dht = nn::randn({B, H, K, V}, rng, 1.0, DType::kF64);
  RecurrenceOptions opt{gate, -1.0, RecurrenceForm::kRecurrent, 64};
  RecurrenceResult r =
      delta ? delta_rule(q, k, v, g, beta, h0, opt) : linear_recurrence(q, k, v, g, h0, opt);
  (sum(r.o * d_o) + sum(r.ht * dht)).backward();
  TensorMap m = {{"q", q},         {"k", k},         {"v", v},         {"h0", h0},
                 {"o", r.o},       {"ht", r.ht},     {"do", d_o},      {"dht", dht},
                 {"dq", q.grad()}, {"dk", k.grad()}, {"dv", v.grad()}, {"dh0", h0.grad()}};
  if (g.defined()) m["g"] = g, m["dg"] = g.grad();
  if (delta) m["beta"] = beta, m["dbeta"] = beta.grad();
  for (auto& [name, t] : m) (*out)[prefix + "." + name] = t.detach().to(DType::kF32);
}

TEST(VerifyGolden, OtherShapesAndSeedsPass) {
  Rng rng(77);
  TensorMap all;
  add_recurrence(&all, "kda", GateKind::kPerChannel, true, rng);
  add_recurrence(&all, "gdn", GateKind::kScalar, true, rng);
  add_recurrence(&all, "deltanet", GateKind::kNone, true, rng);
  add_recurrence(&all, "simple_gla", GateKind::kScalar, false, rng);
  // A KDA layer of another size, its config in the metadata as in layers_small.
  models::MixerOptions o;
  o.kind = "kda";
  o.d_model = 24, o.num_heads = 3, o.head_dim = 8, o.dtype = DType::kF64;
  o.form = RecurrenceForm::kRecurrent;
  std::unique_ptr<models::Mixer> layer = models::make_mixer(o, rng);
  Tensor x = leaf(nn::randn({2, 29, 24}, rng, 1.0, DType::kF64)),
         dy = nn::randn({2, 29, 24}, rng, 1.0, DType::kF64);
  Tensor y = layer->forward(x);
  sum(y * dy).backward();
  all["kda_layer.x"] = x.detach().to(DType::kF32);
  all["kda_layer.y"] = y.detach().to(DType::kF32);
  all["kda_layer.dy"] = dy.to(DType::kF32);
  all["kda_layer.dx"] = x.grad().to(DType::kF32);
  for (auto& [name, p] : layer->named_parameters()) {
    all["kda_layer.param." + name] = p.detach().to(DType::kF32);
    all["kda_layer.grad." + name] = p.grad().to(DType::kF32);
  }
  std::string path =
      (std::filesystem::temp_directory_path() / "kimi_verify_other_shapes.safetensors").string();
  io::save_tensors(
      path, all,
      {{"kda_layer", R"({"config": {"hidden_size": 24, "head_dim": 8, "num_heads": 3}})"}});

  models::VerifyReport rep = models::verify_golden_file(path);
  EXPECT_TRUE(rep.skipped.empty());
  // 4 prefixes x 2 forms x (o, ht, grads) + the layer's y, dx and 16 parameter gradients, 2 forms.
  EXPECT_GE(rep.rows.size(), 4u * 2u * 7u + 2u * 18u);
  for (const auto& r : rep.rows)
    EXPECT_TRUE(r.pass) << r.prefix << " " << r.form << " " << r.tensor << " " << r.rel_err;
}

TEST(VerifyGolden, AWrongReferenceFails) {
  Rng rng(3);
  TensorMap all;
  add_recurrence(&all, "gdn", GateKind::kScalar, true, rng);
  Tensor o = all["gdn.o"].clone();
  o.data<float>()[5] += 0.5f;
  all["gdn.o"] = o;
  std::string path =
      (std::filesystem::temp_directory_path() / "kimi_verify_wrong.safetensors").string();
  io::save_tensors(path, all);
  models::VerifyReport rep = models::verify_golden_file(path);
  EXPECT_FALSE(rep.all_pass());
}

}  // namespace
}  // namespace kimi
