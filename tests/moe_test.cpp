// Mixture of experts that trains (suite Moe): the routing kernels against the host rule, the
// sorted grouped-GEMM block against a dense sum over all experts (with gradients on), float64
// finite differences through the block and through a whole MoE language model, the balance
// loss's gradient, the auxiliary-loss-free bias update, and a tiny training run whose loss falls
// while the bias update evens out a skewed router.
#include "models/moe.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "core/autograd/autograd.h"
#include "core/ops/moe_ops.h"
#include "core/ops/ops.h"
#include "core/optim/optimizer.h"
#include "models/language_model.h"
#include "tests/golden.h"
#include "tests/gradcheck.h"
#include "trainer/trainer.h"

namespace kimi::models {
namespace {

std::vector<double> uniform(std::mt19937_64& rng, size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = u(rng);
  return v;
}

MoeOptions small_moe() {
  MoeOptions o;
  o.d_model = 6, o.num_experts = 4, o.top_k = 2, o.expert_hidden = 5, o.num_shared = 1;
  o.routed_scaling_factor = 1.7, o.dtype = DType::kF64, o.init_std = 0.4;
  return o;
}

// route_topk picks what the host rule picks, with and without groups; the sort is stable and
// consistent: token[position[s]] is s's token, offsets count each expert's slots.
TEST(Moe, RoutingKernelsMatchTheHostRule) {
  std::mt19937_64 rng(5);
  const int64_t N = 40, E = 8, K = 3;
  const std::vector<double> s = uniform(rng, N * E, 0, 1), b = uniform(rng, E, -0.2, 0.2);
  Tensor scores = Tensor::from_vector(s, {N, E}), bias = Tensor::from_vector(b, {E});
  for (const int64_t groups : {1, 4}) {
    MoeOptions o;
    o.num_experts = E, o.top_k = K, o.num_groups = groups, o.topk_group = groups == 1 ? 1 : 2;
    const Routing want = route_tokens(s, b, N, o);
    const ExpertChoice got = moe_route_topk(scores, bias, K, o.num_groups, o.topk_group);
    const std::vector<int64_t> ids = got.ids.to_vector<int64_t>();
    EXPECT_EQ(ids, want.expert) << groups << " groups";
    const std::vector<int64_t> flat = got.flat.to_vector<int64_t>();
    for (int64_t i = 0; i < N * K; ++i) EXPECT_EQ(flat[i], (i / K) * E + ids[i]);

    const ExpertSort sorted = moe_sort_by_expert(got.ids, E);
    const std::vector<int64_t> tok = sorted.token.to_vector<int64_t>();
    const std::vector<int64_t> pos = sorted.position.to_vector<int64_t>();
    const std::vector<int64_t> off = sorted.offsets.to_vector<int64_t>();
    ASSERT_EQ(off.size(), static_cast<size_t>(E + 1));
    EXPECT_EQ(off.front(), 0);
    EXPECT_EQ(off.back(), N * K);
    std::vector<int64_t> last(E, -1);
    for (int64_t i = 0; i < N * K; ++i) {
      EXPECT_EQ(tok[pos[i]], i / K);
      EXPECT_GE(pos[i], off[ids[i]]);
      EXPECT_LT(pos[i], off[ids[i] + 1]);
      EXPECT_GT(pos[i], last[ids[i]]) << "not stable";
      last[ids[i]] = pos[i];
    }
  }
}

// With gradients recorded (training), the sorted grouped-GEMM block equals
// shared(x) + sum_e w_e(x) expert_e(x), the weights from the host rule.
TEST(Moe, TrainingForwardMatchesDenseSum) {
  const MoeOptions o = small_moe();
  Rng rng(7);
  SparseMoeBlock moe(o, rng);
  moe.gate->e_score_correction_bias.copy_(nn::randn({4}, rng, 0.1, DType::kF64));
  Tensor x = nn::randn({3, 5, 6}, rng, 1.0, DType::kF64).set_requires_grad(true);
  Tensor y = moe.forward(x);
  ASSERT_TRUE(y.requires_grad());
  NoGradGuard no_grad;
  const Routing r = moe.route(x.reshape({15, 6}));
  std::vector<double> dense(15 * 4, 0.0);
  for (int64_t i = 0; i < 15 * 2; ++i) dense[(i / 2) * 4 + r.expert[i]] = r.weight[i];
  Tensor want = moe.shared_experts->forward(x);
  Tensor w = Tensor::from_vector(dense, {3, 5, 4});
  for (int64_t e = 0; e < 4; ++e) want = want + moe.experts[e]->forward(x) * w.narrow(2, e, 1);
  EXPECT_LT(test::rel_err(y.to_vector<double>(), want.to_vector<double>()), 1e-14);
}

// Finite differences through routing weights (renormalised, scaled), the gathers and both
// grouped GEMMs: the input, the router and every expert's and the shared expert's weights.
TEST(Moe, BlockGradientsMatchFiniteDifferences) {
  MoeOptions o = small_moe();
  o.top_k = 3;  // E=4, K=3: every expert gets rows, one group of a different size each
  Rng rng(11);
  SparseMoeBlock moe(o, rng);
  moe.gate->e_score_correction_bias.copy_(nn::randn({4}, rng, 0.1, DType::kF64));
  std::vector<Tensor> inputs = {nn::randn({2, 4, 6}, rng, 1.0, DType::kF64).set_requires_grad(true),
                                moe.gate->weight, moe.shared_experts->named_parameters()[0].second};
  for (const auto& ex : moe.experts)
    inputs.push_back(ex->w1->weight), inputs.push_back(ex->w2->weight);
  testing::GradcheckOptions opt;
  opt.check_f32 = false;  // the parameters are the module's own F64 tensors
  const testing::GradcheckResult r = testing::gradcheck(
      [&moe](const std::vector<Tensor>& in) { return std::vector<Tensor>{moe.forward(in[0])}; },
      inputs, opt);
  EXPECT_TRUE(r.ok) << r.report;
  ASSERT_TRUE(moe.gate->weight.grad().defined());
  EXPECT_FALSE(moe.gate->e_score_correction_bias.grad().defined()) << "the bias is not trained";
}

// The balance loss alpha * sum_e f_e P_e adds exactly its own gradient to the router (f_e from
// the routed counts, P_e the mean normalised score), and leaves the forward unchanged.
TEST(Moe, BalanceLossAddsItsGradientOnly) {
  MoeOptions o = small_moe();
  const double alpha = 0.3;
  const int64_t N = 8, E = 4, K = 2, d = 6;
  auto grads = [&](double coef, std::vector<double>* y) {
    MoeOptions oc = o;
    oc.aux_loss_coef = coef;
    Rng rng(13);
    SparseMoeBlock moe(oc, rng);
    Tensor x = nn::randn({N, d}, rng, 1.0, DType::kF64);
    Tensor r = nn::randn({N, d}, rng, 1.0, DType::kF64);
    Tensor out = moe.forward(x);
    *y = out.to_vector<double>();
    sum(out * r).backward();
    return std::make_pair(
        moe.gate->weight.grad().to_vector<double>(),
        std::make_pair(x.to_vector<double>(), moe.gate->weight.to_vector<double>()));
  };
  std::vector<double> y0, y1;
  const auto [g0, xw] = grads(0.0, &y0);
  const auto [g1, xw1] = grads(alpha, &y1);
  EXPECT_EQ(y0, y1);
  const auto& [x, w] = xw;
  // The balance loss on the host, as a function of the router weight (counts held fixed).
  std::vector<double> scores(N * E);
  auto score = [&](const std::vector<double>& wr) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t e = 0; e < E; ++e) {
        double z = 0;
        for (int64_t j = 0; j < d; ++j) z += x[n * d + j] * wr[e * d + j];
        scores[n * E + e] = 1 / (1 + std::exp(-z));
      }
  };
  score(w);
  MoeOptions route = o;
  const Routing r = route_tokens(scores, std::vector<double>(E, 0.0), N, route);
  std::vector<double> count(E, 0.0);
  for (int64_t e : r.expert) count[e] += 1;
  auto balance = [&](const std::vector<double>& wr) {
    score(wr);
    double l = 0;
    for (int64_t e = 0; e < E; ++e) {
      double p = 0;
      for (int64_t n = 0; n < N; ++n) {
        double row = 0;
        for (int64_t j = 0; j < E; ++j) row += scores[n * E + j];
        p += scores[n * E + e] / row / N;
      }
      l += count[e] * E / (K * N) * p;
    }
    return alpha * l;
  };
  double err = 0, scale = 1e-12;
  for (size_t i = 0; i < w.size(); ++i) {
    std::vector<double> wp = w, wm = w;
    wp[i] += 1e-6, wm[i] -= 1e-6;
    const double fd = (balance(wp) - balance(wm)) / 2e-6;
    err = std::max(err, std::abs((g1[i] - g0[i]) - fd));
    scale = std::max(scale, std::abs(fd));
  }
  EXPECT_GT(scale, 1e-4) << "the balance loss has no gradient to check";
  EXPECT_LT(err / scale, 1e-6);
}

TEST(Moe, BiasUpdateMovesTowardTheMeanLoad) {
  const std::vector<double> b = balanced_bias({0.0, 0.1, -0.2, 0.5}, {10, 2, 4, 4}, 0.01);
  // mean load 5: expert 0 overloaded (down), the rest under (up); equal load keeps its bias.
  EXPECT_EQ(b, (std::vector<double>{-0.01, 0.11, -0.19, 0.51}));
  EXPECT_EQ(balanced_bias({0.3, 0.3}, {5, 5}, 0.01), (std::vector<double>{0.3, 0.3}));
}

ModelConfig tiny_moe_model() {
  ModelConfig c;
  c.d_model = 16, c.n_layers = 2, c.mixer = {"attention"}, c.num_heads = 2, c.head_dim = 8;
  c.mlp = true, c.mlp_hidden = 12, c.init_std = 0.3;
  c.moe.num_experts = 4, c.moe.top_k = 2, c.moe.expert_hidden = 8, c.moe.num_shared = 1;
  c.moe.first_dense = 1, c.moe.routed_scaling_factor = 1.5, c.moe.aux_loss_coef = 0.01;
  return c;
}

// A whole MoE language model in float64: the loss's gradient against central differences at
// sampled coordinates of every parameter (the first layer dense, the second MoE), with attention
// and with MLA layers carrying the decoupled RoPE slice. No balance loss here: its gradient is not
// part of lm_loss (it reaches the router and everything below it; checked above).
TEST(Moe, LanguageModelGradientsMatchFiniteDifferences) {
  for (const bool mla_rope : {false, true}) {
    ModelConfig c = tiny_moe_model();
    c.moe.aux_loss_coef = 0;
    if (mla_rope) c.mixer = {"mla"}, c.rope = true, c.qk_rope_dim = 4, c.kv_lora_rank = 6;
    LanguageModel model(c, 11, 3, DType::kF64);
    std::mt19937_64 rng(2);
    std::vector<int32_t> ids(2 * 7), labels(2 * 7);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = rng() % 11, labels[i] = rng() % 11;
    Tensor id = Tensor::from_vector(ids, {2, 7}), lab = Tensor::from_vector(labels, {2, 7});
    auto loss_value = [&] {
      NoGradGuard no_grad;
      return lm_loss(model.forward(id), lab).item();
    };
    lm_loss(model.forward(id), lab).backward();
    int checked = 0, moe_params = 0;
    for (auto& [name, p] : model.named_parameters()) {
      if (name.find("e_score_correction_bias") != std::string::npos) continue;
      moe_params += name.find(".moe.") != std::string::npos;
      ASSERT_TRUE(p.grad().defined()) << name;
      const std::vector<double> g = p.grad().to_vector<double>();
      auto* data = p.data<double>();
      for (int64_t i = 0; i < p.numel(); i += std::max<int64_t>(1, p.numel() / 5)) {
        const double keep = data[i];
        data[i] = keep + 1e-6;
        const double up = loss_value();
        data[i] = keep - 1e-6;
        const double down = loss_value();
        data[i] = keep;
        const double fd = (up - down) / 2e-6;
        EXPECT_NEAR(g[i], fd, 1e-7 + 1e-6 * std::abs(fd))
            << (mla_rope ? "mla rope: " : "attention: ") << name << "[" << i << "]";
        ++checked;
      }
    }
    EXPECT_GT(moe_params, 10);
    EXPECT_GT(checked, 100);
  }
}

// Largest |load_e - 1/E| over the experts of every MoE layer.
double imbalance(const LanguageModel& m) {
  double worst = 0;
  for (const auto& layer : m.moe_expert_load())
    for (double l : layer) worst = std::max(worst, std::abs(l - 1.0 / layer.size()));
  return worst;
}

// Next token = previous + 1 (mod V) from a random start: a tiny MoE model learns it while the
// bias update undoes a router that starts sending every token to experts 0 and 1.
double train_tiny(double bias_rate, double* first_loss, double* last_loss, double* first_imb) {
  ModelConfig c = tiny_moe_model();
  c.moe.aux_loss_coef = 0, c.moe.bias_update_rate = bias_rate, c.init_std = 0.1;
  const int64_t V = 12, B = 8, T = 12;
  LanguageModel model(c, V, 1);
  for (auto& [name, p] : model.named_parameters())
    if (name.find("e_score_correction_bias") != std::string::npos)
      p.copy_(Tensor::from_vector(std::vector<float>{0.3f, 0.3f, -0.3f, -0.3f}, {4}));
  optim::AdamW opt(model.named_parameters(), optim::AdamWOptions{0.9, 0.95, 1e-8, 0.0});
  std::mt19937_64 rng(4);
  for (int step = 0; step < 60; ++step) {
    std::vector<int32_t> ids(B * T), labels(B * T);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t start = static_cast<int64_t>(rng() % V);
      for (int64_t t = 0; t < T; ++t) {
        ids[b * T + t] = static_cast<int32_t>((start + t) % V);
        labels[b * T + t] = static_cast<int32_t>((start + t + 1) % V);
      }
    }
    Tensor loss = lm_loss(model.forward(Tensor::from_vector(ids, {B, T})),
                          Tensor::from_vector(labels, {B, T}));
    opt.zero_grad();
    loss.backward();
    opt.step(1e-2);
    model.after_optimizer_step();
    if (step == 0) *first_loss = loss.item(), *first_imb = imbalance(model);
    *last_loss = loss.item();
  }
  return imbalance(model);
}

TEST(Moe, TinyRunLearnsAndTheBiasUpdateBalancesLoad) {
  double l0 = 0, l1 = 0, imb0 = 0;
  const double balanced = train_tiny(0.02, &l0, &l1, &imb0);
  EXPECT_LT(l1, 0.5 * l0) << "loss " << l0 << " -> " << l1;
  EXPECT_GT(imb0, 0.15) << "the skewed router should start unbalanced";
  EXPECT_LT(balanced, 0.08) << "imbalance " << imb0 << " -> " << balanced;
  double m0 = 0, m1 = 0, mimb0 = 0;
  const double frozen = train_tiny(0.0, &m0, &m1, &mimb0);
  EXPECT_GT(frozen, 2 * balanced) << "without the update the skew should stay";
  std::cout << fmt::format(
      "[Moe] loss {:.3f} -> {:.3f}; max |load - 1/E| {:.3f} -> {:.3f} "
      "(bias update) vs {:.3f} (none)\n",
      l0, l1, imb0, balanced, frozen);
}

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells(1);
    for (char ch : line) {
      if (ch == ',')
        cells.emplace_back();
      else
        cells.back().push_back(ch);
    }
    rows.push_back(cells);
  }
  return rows;
}

// The trainer logs the load: metrics.csv's moe_max_load (busiest expert / mean, in [1, E]) and
// moe_load.csv (every MoE layer's every expert per step, summing to 1); a resumed run continues
// the bias from the checkpoint and logs the same loads as an uninterrupted one.
TEST(Moe, TrainerLogsLoadAndResumesTheBias) {
  namespace fs = std::filesystem;
  const std::vector<std::string> o = {"task.name=mqar",
                                      "task.vocab_size=32",
                                      "task.mqar.num_kv_pairs=2",
                                      "model.d_model=16",
                                      "model.num_heads=2",
                                      "model.head_dim=8",
                                      "model.mixer=attention",
                                      "model.n_layers=2",
                                      "model.mlp=true",
                                      "model.moe.num_experts=4",
                                      "model.moe.top_k=2",
                                      "model.moe.expert_hidden=8",
                                      "model.moe.first_dense=1",
                                      "model.moe.bias_update_rate=0.01",
                                      "train.seq_len=16",
                                      "train.batch_size=4",
                                      "train.steps=8",
                                      "train.log_every=1",
                                      "train.eval_every=0",
                                      "train.checkpoint_every=4",
                                      "train.threads=1",
                                      "train.device=cpu",
                                      "eval.seq_lens=[16]",
                                      "eval.num_examples=8"};
  auto run = [&](const std::string& dir, int64_t stop_at, bool resume) {
    RunRequest req;
    req.overrides = resume ? std::vector<std::string>{} : o;
    req.progress = false, req.stop_at = stop_at;
    (resume ? req.resume_dir : req.out_dir) = dir;
    spdlog::set_level(spdlog::level::warn);
    return run_training(req);
  };
  const std::string a = (fs::temp_directory_path() / "kimi_moe_trainer_whole").string();
  const std::string b = (fs::temp_directory_path() / "kimi_moe_trainer_split").string();
  fs::remove_all(a), fs::remove_all(b);
  run(a, 0, false);
  const auto metrics = read_csv(a + "/metrics.csv");
  ASSERT_EQ(metrics.size(), 9u);
  ASSERT_EQ(metrics[0].back(), "moe_max_load");
  for (size_t r = 1; r < metrics.size(); ++r) {
    const double m = std::stod(metrics[r].back());
    EXPECT_GE(m, 1.0 - 1e-9);
    EXPECT_LE(m, 4.0 + 1e-9);
  }
  const auto load = read_csv(a + "/moe_load.csv");
  ASSERT_EQ(load.size(), 1u + 8 * 4);  // 8 steps x 1 MoE layer x 4 experts
  EXPECT_EQ(load[0], (std::vector<std::string>{"step", "layer", "expert", "load"}));
  for (size_t step = 0; step < 8; ++step) {
    double total = 0;
    for (size_t e = 0; e < 4; ++e) {
      EXPECT_EQ(load[1 + step * 4 + e][1], "1");  // the MoE layer is layer 1
      total += std::stod(load[1 + step * 4 + e][3]);
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
  run(b, 4, false);
  run(b, 0, true);
  EXPECT_EQ(read_csv(b + "/moe_load.csv"), load);
}

}  // namespace
}  // namespace kimi::models
