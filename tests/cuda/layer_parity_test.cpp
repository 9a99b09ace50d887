// CPU-vs-CUDA parity of every mixer layer and of a whole language model (part of
// kimi_cuda_op_parity): the same weights (built on the CPU, copied with Module::to), the same
// input and upstream gradient; forward output, input gradient and every parameter gradient
// must agree, and so must prefill + token-by-token decoding with the state on the GPU. F32 on
// both sides at fp32 compute (max|gpu - cpu| / max|cpu| <= 1e-4 forward, 1e-3 gradients), then
// the training setting (bf16 products) against the same CPU f32 numbers with wider bounds, and
// again with autocast (BF16 activations, F32 parameters whose gradients must arrive in F32).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/autograd/autograd.h"
#include "core/backend/precision.h"
#include "core/nn/module.h"
#include "core/ops/moe_ops.h"
#include "core/ops/ops.h"
#include "core/optim/optimizer.h"
#include "models/kimi_linear.h"
#include "models/language_model.h"
#include "models/mixer.h"
#include "models/moe.h"
#include "tests/cuda/parity_util.h"
#include "tests/golden.h"

namespace kimi::models {
namespace {

using testing::rel_max;

Tensor randn(const Shape& s, uint64_t seed, double std = 1.0) {
  Rng rng(seed);
  return nn::randn(s, rng, std);
}

// Odd sizes: T = 37 is not a multiple of the chunk; K != V where the layer allows it. Chunk 64:
// the one size the CUDA chunk kernels run (others are refused).
std::vector<std::pair<std::string, MixerOptions>> layer_cases() {
  std::vector<std::pair<std::string, MixerOptions>> out;
  for (const std::string& kind : mixer_kinds()) {
    MixerOptions o;
    o.kind = kind;
    o.d_model = 48, o.num_heads = 2, o.head_dim = 16, o.expand_v = 1.5, o.chunk_size = 64;
    o.init_std = 0.1;
    if (kind == "gdn") o.output_gate = "swish";
    if (kind == "mamba2") o.expand = 2, o.d_state = 8, o.n_groups = 2;  // 6 heads over 2 groups
    if (kind == "attention") o.num_kv_heads = 1, o.rope = true;
    if (kind == "mla") o.kv_lora_rank = 12, o.q_lora_rank = 10, o.qk_rope_dim = 4, o.v_head_dim = 6;
    out.emplace_back(kind, o);
  }
  MixerOptions mla_rope = out.back().second;  // mla, with DeepSeek-V2's decoupled RoPE slice
  for (auto& [k, o] : out)
    if (k == "mla") mla_rope = o;
  mla_rope.rope = true;
  out.emplace_back("mla_rope", mla_rope);
  MixerOptions kda_rec;
  kda_rec.kind = "kda", kda_rec.d_model = 48, kda_rec.num_heads = 2, kda_rec.head_dim = 16;
  kda_rec.form = RecurrenceForm::kRecurrent, kda_rec.init_std = 0.1;
  out.emplace_back("kda_recurrent", kda_rec);
  // Table 1's KDA ablations: no short conv (SiLU on the projections) without an output gate, and
  // the swish gate instead of the sigmoid one.
  MixerOptions kda_plain = kda_rec;
  kda_plain.form = RecurrenceForm::kChunk, kda_plain.chunk_size = 64;
  kda_plain.short_conv = false, kda_plain.output_gate = "none";
  out.emplace_back("kda_noconv_nogate", kda_plain);
  MixerOptions kda_swish = kda_plain;
  kda_swish.short_conv = true, kda_swish.output_gate = "swish";
  out.emplace_back("kda_swish_gate", kda_swish);
  return out;
}

struct Pass {
  Tensor y, dx;
  std::vector<Tensor> grads;
};

Pass run_layer(Mixer& layer, const Tensor& x_in, const Tensor& up) {
  layer.zero_grad();
  Tensor x = x_in.detach();
  x.set_requires_grad(true);
  Pass p;
  p.y = layer.forward(x);
  p.y.backward(up);
  p.dx = x.grad();
  for (auto& [name, t] : layer.named_parameters()) p.grads.push_back(t.grad());
  return p;
}

void expect_close(const Pass& gpu, const Pass& cpu, const std::vector<std::string>& names,
                  double out_tol, double grad_tol) {
  EXPECT_LE(rel_max(gpu.y, cpu.y), out_tol) << "y";
  EXPECT_LE(rel_max(gpu.dx, cpu.dx), grad_tol) << "dx";
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    if (!cpu.grads[i].defined()) continue;
    ASSERT_TRUE(gpu.grads[i].defined()) << names[i] << ": no GPU gradient";
    EXPECT_EQ(gpu.grads[i].device(), Device::kCUDA) << names[i];
    EXPECT_EQ(gpu.grads[i].dtype(), DType::kF32) << names[i];
    EXPECT_LE(rel_max(gpu.grads[i], cpu.grads[i]), grad_tol) << "grad." << names[i];
  }
}

class LayerParity : public ::testing::TestWithParam<size_t> {};

TEST_P(LayerParity, ForwardBackwardAndDecodeMatchTheCpu) {
  const auto [name, opt] = layer_cases().at(GetParam());
  Rng rng(11);
  std::unique_ptr<Mixer> cpu = make_mixer(opt, rng);
  Rng rng2(11);
  std::unique_ptr<Mixer> gpu = make_mixer(opt, rng2);
  gpu->to(Device::kCUDA);
  std::vector<std::string> names;
  for (auto& [n, t] : cpu->named_parameters()) names.push_back(n);
  const int64_t B = 2, T = 37;
  Tensor x = randn({B, T, opt.d_model}, 5), up = randn({B, T, opt.d_model}, 6);
  const Pass ref = run_layer(*cpu, x, up);
  {
    ComputePrecisionGuard fp32(ComputePrecision::kFP32);
    expect_close(run_layer(*gpu, x.to(Device::kCUDA), up.to(Device::kCUDA)), ref, names, 1e-4,
                 1e-3);
  }
  {
    ComputePrecisionGuard bf16(ComputePrecision::kBF16);
    expect_close(run_layer(*gpu, x.to(Device::kCUDA), up.to(Device::kCUDA)), ref, names, 5e-2,
                 1e-1);
  }
  {
    ComputePrecisionGuard bf16(ComputePrecision::kBF16);
    ActivationDTypeGuard autocast(DType::kBF16);
    const Pass p = run_layer(*gpu, x.to(Device::kCUDA), up.to(Device::kCUDA));
    EXPECT_EQ(p.y.dtype(), DType::kBF16) << "autocast output";
    EXPECT_EQ(p.dx.dtype(), DType::kF32) << "the F32 input's gradient";
    expect_close(p, ref, names, 5e-2, 1e-1);
  }
  // Prefill 30 tokens, then 7 single-token steps, all on the GPU, against the CPU's whole pass.
  ComputePrecisionGuard fp32(ComputePrecision::kFP32);
  NoGradGuard ng;
  auto state = gpu->new_state(B);
  Tensor xg = x.to(Device::kCUDA);
  std::vector<Tensor> pieces = {gpu->forward(xg.narrow(1, 0, 30), state.get())};
  for (int64_t t = 30; t < T; ++t) pieces.push_back(gpu->forward(xg.narrow(1, t, 1), state.get()));
  EXPECT_LE(rel_max(concat(pieces, 1), ref.y), 1e-4) << "prefill + decode";
}

INSTANTIATE_TEST_SUITE_P(Cuda, LayerParity, ::testing::Range<size_t>(0, layer_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return layer_cases().at(info.param).first;
                         });

// A whole model (embedding, a KDA + MLA + attention hybrid with MLPs, norm, head, loss) and one
// AdamW step: the loss, every gradient and the updated weights agree.
TEST(ModelParity, LossGradientsAndAnAdamWStepMatchTheCpu) {
  ModelConfig cfg;
  cfg.d_model = 32, cfg.n_layers = 3, cfg.num_heads = 2, cfg.head_dim = 16, cfg.mlp = true;
  cfg.mixer = {"kda", "mla", "attention"};
  LanguageModel cpu(cfg, 50, 3), gpu(cfg, 50, 3);
  gpu.to(Device::kCUDA);
  std::vector<int32_t> ids(2 * 21), labels(2 * 21);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<int32_t>((i * 7 + 3) % 50), labels[i] = i % 5 ? ids[i] : -100;
  Tensor ids_t = Tensor::from_vector(ids, {2, 21}), labels_t = Tensor::from_vector(labels, {2, 21});
  ComputePrecisionGuard fp32(ComputePrecision::kFP32);
  Tensor lc = lm_loss(cpu.forward(ids_t), labels_t);
  Tensor lg = lm_loss(gpu.forward(ids_t.to(Device::kCUDA)), labels_t.to(Device::kCUDA));
  lc.backward();
  lg.backward();
  EXPECT_LE(rel_max(lg, lc), 1e-5);
  auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i)
    EXPECT_LE(rel_max(pg[i].second.grad(), pc[i].second.grad()), 1e-3) << pc[i].first;
  // eps = 1 keeps the step a smooth function of the gradient: with the usual 1e-8 a gradient
  // near zero whose sign differs between the devices would move a weight by +-lr on one only.
  const optim::AdamWOptions ao{0.9, 0.95, 1.0, 0.1};
  optim::AdamW oc(pc, ao), og(pg, ao);
  oc.step(1e-2);
  og.step(1e-2);
  for (size_t i = 0; i < pc.size(); ++i)
    EXPECT_LE(rel_max(pg[i].second, pc[i].second), 1e-4) << pc[i].first;
}

// The same model with autocast (BF16 activations, bf16 products) against the CPU in f32: an F32
// loss, and F32 gradients on the GPU for the F32 parameters, within bf16-level bounds.
TEST(ModelParity, AutocastLossAndGradientsMatchTheCpu) {
  ModelConfig cfg;
  cfg.d_model = 32, cfg.n_layers = 3, cfg.num_heads = 2, cfg.head_dim = 16, cfg.mlp = true;
  cfg.mixer = {"kda", "mla", "attention"};
  LanguageModel cpu(cfg, 50, 3), gpu(cfg, 50, 3);
  gpu.to(Device::kCUDA);
  std::vector<int32_t> ids(2 * 21), labels(2 * 21);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<int32_t>((i * 7 + 3) % 50), labels[i] = i % 5 ? ids[i] : -100;
  Tensor ids_t = Tensor::from_vector(ids, {2, 21}), labels_t = Tensor::from_vector(labels, {2, 21});
  Tensor lc = lm_loss(cpu.forward(ids_t), labels_t);
  lc.backward();
  ComputePrecisionGuard bf16(ComputePrecision::kBF16);
  ActivationDTypeGuard autocast(DType::kBF16);
  Tensor logits = gpu.forward(ids_t.to(Device::kCUDA));
  EXPECT_EQ(logits.dtype(), DType::kBF16);
  Tensor lg = lm_loss(logits, labels_t.to(Device::kCUDA));
  EXPECT_EQ(lg.dtype(), DType::kF32);
  lg.backward();
  EXPECT_LE(rel_max(lg, lc), 5e-2);
  auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    const Tensor g = pg[i].second.grad();
    ASSERT_TRUE(g.defined()) << pc[i].first;
    EXPECT_EQ(g.dtype(), DType::kF32) << pc[i].first;
    EXPECT_EQ(g.device(), Device::kCUDA) << pc[i].first;
    EXPECT_LE(rel_max(g, pc[i].second.grad()), 1e-1) << pc[i].first;
  }
}

// MoE on the GPU: the routing kernels choose and sort exactly as the CPU's (same F32 scores in),
// and the block's forward, input gradient, parameter gradients and bias update agree, with no
// value read back to the host inside the forward.
TEST(MoeParity, RoutingBlockAndBiasUpdateMatchTheCpu) {
  Rng srng(3);
  Tensor scores = nn::rand_uniform({300, 16}, srng, 0, 1), bias = nn::randn({16}, srng, 0.05);
  for (const int64_t groups : {1, 4}) {
    const ExpertChoice c = moe_route_topk(scores, bias, 4, groups, groups == 1 ? 1 : 2);
    const ExpertChoice g = moe_route_topk(scores.to(Device::kCUDA), bias.to(Device::kCUDA), 4,
                                          groups, groups == 1 ? 1 : 2);
    EXPECT_EQ(g.ids.to(Device::kCPU).to_vector<int64_t>(), c.ids.to_vector<int64_t>()) << groups;
    EXPECT_EQ(g.flat.to(Device::kCPU).to_vector<int64_t>(), c.flat.to_vector<int64_t>());
    const ExpertSort sc = moe_sort_by_expert(c.ids, 16), sg = moe_sort_by_expert(g.ids, 16);
    EXPECT_EQ(sg.token.to(Device::kCPU).to_vector<int64_t>(), sc.token.to_vector<int64_t>());
    EXPECT_EQ(sg.position.to(Device::kCPU).to_vector<int64_t>(), sc.position.to_vector<int64_t>());
    EXPECT_EQ(sg.offsets.to(Device::kCPU).to_vector<int64_t>(), sc.offsets.to_vector<int64_t>());
  }
  MoeOptions o;
  o.d_model = 40, o.num_experts = 8, o.top_k = 2, o.expert_hidden = 24, o.num_shared = 1;
  o.routed_scaling_factor = 2.0, o.bias_update_rate = 0.01, o.aux_loss_coef = 0.01;
  o.init_std = 0.1;
  Rng r1(9), r2(9);
  SparseMoeBlock cpu(o, r1), gpu(o, r2);
  gpu.to(Device::kCUDA);
  Tensor x = randn({3, 37, 40}, 5), up = randn({3, 37, 40}, 6);
  ComputePrecisionGuard fp32(ComputePrecision::kFP32);
  auto run = [&](SparseMoeBlock& m, const Tensor& xin, const Tensor& u) {
    Tensor xi = xin.detach();
    xi.set_requires_grad(true);
    Tensor y = m.forward(xi);
    y.backward(u);
    m.after_optimizer_step();
    return std::make_pair(y, xi.grad());
  };
  const auto [yc, dxc] = run(cpu, x, up);
  const auto [yg, dxg] = run(gpu, x.to(Device::kCUDA), up.to(Device::kCUDA));
  EXPECT_LE(rel_max(yg, yc), 1e-4);
  EXPECT_LE(rel_max(dxg, dxc), 1e-3);
  auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    if (!pc[i].second.grad().defined()) continue;  // the correction bias: no gradient
    EXPECT_LE(rel_max(pg[i].second.grad(), pc[i].second.grad()), 1e-3) << pc[i].first;
  }
  EXPECT_LE(rel_max(gpu.gate->e_score_correction_bias, cpu.gate->e_score_correction_bias), 1e-6);
  EXPECT_EQ(gpu.expert_load(), cpu.expert_load());
}

// A language model with MoE layers (one dense, two MoE) and MLA with its RoPE slice: loss and
// every gradient agree.
TEST(ModelParity, MoeAndMlaRopeModelMatchesTheCpu) {
  ModelConfig cfg;
  cfg.d_model = 32, cfg.n_layers = 3, cfg.num_heads = 2, cfg.head_dim = 16, cfg.mlp = true;
  cfg.mixer = {"kda", "mla", "attention"}, cfg.rope = true, cfg.qk_rope_dim = 8;
  cfg.moe.num_experts = 6, cfg.moe.top_k = 2, cfg.moe.expert_hidden = 16, cfg.moe.first_dense = 1;
  cfg.moe.aux_loss_coef = 0.01;
  LanguageModel cpu(cfg, 50, 3), gpu(cfg, 50, 3);
  gpu.to(Device::kCUDA);
  std::vector<int32_t> ids(2 * 21), labels(2 * 21);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<int32_t>((i * 7 + 3) % 50), labels[i] = i % 5 ? ids[i] : -100;
  Tensor ids_t = Tensor::from_vector(ids, {2, 21}), labels_t = Tensor::from_vector(labels, {2, 21});
  ComputePrecisionGuard fp32(ComputePrecision::kFP32);
  Tensor lc = lm_loss(cpu.forward(ids_t), labels_t);
  Tensor lg = lm_loss(gpu.forward(ids_t.to(Device::kCUDA)), labels_t.to(Device::kCUDA));
  lc.backward();
  lg.backward();
  EXPECT_LE(rel_max(lg, lc), 1e-5);
  auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  ASSERT_EQ(pc.size(), pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    if (!pc[i].second.grad().defined()) continue;  // MoE correction biases
    EXPECT_LE(rel_max(pg[i].second.grad(), pc[i].second.grad()), 1e-3) << pc[i].first;
  }
  cpu.after_optimizer_step();
  gpu.after_optimizer_step();
  EXPECT_EQ(gpu.moe_expert_load(), cpu.moe_expert_load());
}

// The Kimi-Linear hybrid (KDA + MLA + MoE) on the GPU against the reference logits of
// tests/golden/kimi_tiny, whole and as prefill 50 + 30 decode steps (README's 1e-5).
TEST(KimiTinyParity, LogitsOnTheGpuMatchTheReference) {
  KIMI_SKIP_WITHOUT_GOLDEN("kimi_tiny/model.safetensors");
  test::GoldenFile f("kimi_tiny/reference.safetensors");
  Tensor ids =
      Tensor::from_vector(f.file().read_i64("input_ids"), f.file().info("input_ids").shape);
  const test::GoldenTensor ref = f.get("logits");
  auto model = KimiLinearModel::from_pretrained(test::golden_path("kimi_tiny"), DType::kF32);
  model->to(Device::kCUDA);
  ComputePrecisionGuard fp32(ComputePrecision::kFP32);
  NoGradGuard ng;
  Tensor whole = model->forward(ids.to(Device::kCUDA));
  ASSERT_EQ(whole.device(), Device::kCUDA);
  EXPECT_LT(test::rel_err(whole.to_vector<double>(), ref.data), 1e-5) << "whole sequence";
  KimiLinearState state = model->new_state(ids.size(0));
  std::vector<Tensor> pieces = {
      model->forward(ids.narrow(1, 0, 50).contiguous().to(Device::kCUDA), &state)};
  for (int64_t t = 50; t < ids.size(1); ++t)
    pieces.push_back(model->forward(ids.narrow(1, t, 1).contiguous().to(Device::kCUDA), &state));
  EXPECT_LT(test::rel_err(concat(pieces, 1).to_vector<double>(), ref.data), 1e-5)
      << "prefill + decode";
}

}  // namespace
}  // namespace kimi::models
