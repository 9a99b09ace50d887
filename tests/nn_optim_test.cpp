// Module naming, AdamW against a hand-computed step, schedules, clipping, and a tiny MLP that
// learns XOR to near-zero loss, bit-identical across two runs with the same seed.
#include <gtest/gtest.h>

#include <cmath>

#include "core/nn/layers.h"
#include "core/optim/optimizer.h"

namespace kimi {
namespace {

class TwoLayer : public nn::Module {
 public:
  explicit TwoLayer(Rng& rng) {
    nn::InitOptions init{0.5};
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(2, 16, true, rng, init));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(16, 1, true, rng, init));
  }
  Tensor forward(const Tensor& x) const { return fc2->forward(tanh(fc1->forward(x))); }
  std::shared_ptr<nn::Linear> fc1, fc2;
};

std::vector<float> train_xor(uint64_t seed, double* final_loss) {
  Rng rng(seed);
  TwoLayer model(rng);
  optim::AdamW opt(model.named_parameters(), {0.9, 0.99, 1e-8, 0.0});
  Tensor x = Tensor::from_vector(std::vector<float>{0, 0, 0, 1, 1, 0, 1, 1}, {4, 2});
  Tensor y = Tensor::from_vector(std::vector<float>{0, 1, 1, 0}, {4, 1});
  double loss_value = 0;
  for (int step = 0; step < 500; ++step) {
    Tensor diff = model.forward(x) - y;
    Tensor loss = mean(diff * diff);
    opt.zero_grad();
    loss.backward();
    optim::clip_grad_norm(model.parameters(), 1.0);
    opt.step(0.02);
    loss_value = loss.item();
  }
  *final_loss = loss_value;
  std::vector<float> all;
  for (auto& p : model.parameters())
    for (float v : p.to_vector<float>()) all.push_back(v);
  return all;
}

TEST(NnOptim, ParameterNamesAreDotted) {
  Rng rng(0);
  TwoLayer m(rng);
  auto named = m.named_parameters();
  ASSERT_EQ(named.size(), 4u);
  EXPECT_EQ(named[0].first, "fc1.weight");
  EXPECT_EQ(named[1].first, "fc1.bias");
  EXPECT_EQ(named[3].first, "fc2.bias");
  EXPECT_EQ(m.num_parameters(), 2 * 16 + 16 + 16 + 1);
}

TEST(NnOptim, XorLearnsAndIsBitIdentical) {
  double loss_a = 0, loss_b = 0;
  std::vector<float> a = train_xor(7, &loss_a);
  std::vector<float> b = train_xor(7, &loss_b);
  EXPECT_LT(loss_a, 1e-3);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "parameter " << i;
  EXPECT_EQ(loss_a, loss_b);
  double loss_c = 0;
  std::vector<float> c = train_xor(8, &loss_c);
  EXPECT_NE(a, c);
}

TEST(NnOptim, AdamWFirstStepMatchesHandComputation) {
  Tensor p = Tensor::from_vector(std::vector<double>{1.0, -2.0, 3.0, 0.5}, {2, 2});
  p.set_requires_grad(true);
  p.set_grad(Tensor::from_vector(std::vector<double>{0.1, -0.3, 0.0, 2.0}, {2, 2}));
  optim::AdamW opt({{"w", p}}, {0.9, 0.95, 1e-8, 0.1});
  opt.step(0.01);
  // Step 1: m_hat = g, v_hat = g^2, so the update is sign(g) (g/(|g|+eps)) + wd p.
  std::vector<double> want = {1.0 - 0.01 * (0.1 / (0.1 + 1e-8) + 0.1 * 1.0),
                              -2.0 - 0.01 * (-0.3 / (0.3 + 1e-8) + 0.1 * -2.0),
                              3.0 - 0.01 * (0.1 * 3.0),
                              0.5 - 0.01 * (2.0 / (2.0 + 1e-8) + 0.1 * 0.5)};
  std::vector<double> got = p.to_vector<double>();
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(got[i], want[i], 1e-12);
}

TEST(NnOptim, NoDecayForBiasesAndNorms) {
  Tensor w = Tensor::ones({2, 2});
  EXPECT_TRUE(optim::default_decay_filter("q_proj.weight", w));
  EXPECT_FALSE(optim::default_decay_filter("o_norm.weight", w));
  EXPECT_FALSE(optim::default_decay_filter("fc.bias", Tensor::ones({2})));
}

TEST(NnOptim, ScheduleWarmupThenCosine) {
  using optim::lr_at;
  using optim::Schedule;
  EXPECT_NEAR(lr_at(0, 100, 10, 1.0, 0.1, Schedule::kCosine), 0.1, 1e-12);
  EXPECT_NEAR(lr_at(9, 100, 10, 1.0, 0.1, Schedule::kCosine), 1.0, 1e-12);
  EXPECT_NEAR(lr_at(10, 100, 10, 1.0, 0.1, Schedule::kCosine), 1.0, 1e-12);
  EXPECT_NEAR(lr_at(55, 100, 10, 1.0, 0.1, Schedule::kCosine), 0.55, 1e-12);
  EXPECT_NEAR(lr_at(100, 100, 10, 1.0, 0.1, Schedule::kCosine), 0.1, 1e-12);
  EXPECT_NEAR(lr_at(55, 100, 10, 1.0, 0.0, Schedule::kLinear), 0.5, 1e-12);
  EXPECT_NEAR(lr_at(55, 100, 10, 1.0, 0.0, Schedule::kConstant), 1.0, 1e-12);
  EXPECT_THROW(optim::schedule_from_name("step"), UserError);
}

TEST(NnOptim, ClipGradNormScalesToMax) {
  Tensor p = Tensor::zeros({2});
  p.set_requires_grad(true);
  p.set_grad(Tensor::from_vector(std::vector<float>{3, 4}, {2}));
  double norm = optim::clip_grad_norm({p}, 1.0);
  EXPECT_NEAR(norm, 5.0, 1e-6);
  std::vector<float> g = p.grad().to_vector<float>();
  EXPECT_NEAR(std::sqrt(g[0] * g[0] + g[1] * g[1]), 1.0, 1e-5);
}

TEST(NnOptim, LoadStateDictNamesTheBadKey) {
  Rng rng(0);
  TwoLayer m(rng);
  std::map<std::string, Tensor> state;
  for (auto& [n, t] : m.named_parameters()) state[n] = t.clone();
  state["fc1.weight"] = Tensor::zeros({3, 3});
  try {
    m.load_state_dict(state);
    FAIL() << "expected an error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("fc1.weight"), std::string::npos);
  }
}

}  // namespace
}  // namespace kimi
