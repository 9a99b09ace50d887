// Data-parallel training on the CPU communicator: 1, 2 and 3 ranks (ranks as threads with their
// own models and sockets) train a tiny model on the same global batches and give the losses and
// parameters of the single-process run, within float tolerance. One step leaves a rank without a
// labelled position (its gradient counts as zeros).
#include "trainer/data_parallel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/optim/optimizer.h"
#include "models/model_config.h"
#include "tests/dist_ranks.h"
#include "tests/tiny_lm.h"
#include "trainer/grad_accum.h"
#include "trainer/zero1.h"

namespace kimi {
namespace {

ModelConfig tiny_model(bool moe = false) {
  ModelConfig m = tiny_attention_model();
  if (moe) {  // 4 experts, top 2, a fast bias update so that it moves within the test's steps
    m.moe.num_experts = 4;
    m.moe.top_k = 2;
    m.moe.expert_hidden = 8;
    m.moe.bias_update_rate = 0.05;
  }
  return m;
}

// 6 rows of 5; ragged labels, and at step 1 the last two rows (rank 2 of 3) have none.
tasks::Batch batch_at(int step) {
  tasks::Batch b = tasks::empty_batch(6, 5);
  for (int64_t i = 0; i < 30; ++i) {
    b.inputs[i] = static_cast<int32_t>((i * 7 + 3 + step * 5) % 11);
    const bool labelled = step == 1 ? i < 20 : (i < 15 || i % 5 >= 3);
    b.labels[i] = labelled ? static_cast<int32_t>((i * 5 + 1 + step) % 11) : -100;
  }
  return b;
}

constexpr int kSteps = 4;
const optim::AdamWOptions kOpt{0.9, 0.95, 1e-8, 0.1};

struct Trace {
  std::vector<double> losses;
  std::vector<float> params;
  std::vector<float> biases;  // the MoE routers' correction biases
};

std::vector<float> router_biases(const models::LanguageModel& m) {
  std::vector<float> out;
  for (const auto& [name, p] : m.named_parameters())
    if (name.find("e_score_correction_bias") != std::string::npos)
      for (float x : p.to_vector<float>()) out.push_back(x);
  return out;
}

std::vector<float> flat_params(const models::LanguageModel& m) {
  std::vector<float> out;
  for (const Tensor& p : m.parameters())
    for (float x : p.to_vector<float>()) out.push_back(x);
  return out;
}

Trace single_run(bool moe = false) {
  models::LanguageModel model(tiny_model(moe), 11, 7);
  optim::AdamW opt(model.named_parameters(), kOpt);
  Trace t;
  for (int s = 0; s < kSteps; ++s) {
    t.losses.push_back(forward_backward_accumulated(model, batch_at(s), 1, Device::kCPU));
    opt.step(0.01);
    opt.zero_grad();
    model.after_optimizer_step();
  }
  t.params = flat_params(model);
  t.biases = router_biases(model);
  return t;
}

}  // namespace

namespace {

// The same steps on `world` ranks (threads with their own models and sockets): ZeRO-1 AdamW,
// `micro` micro-batches inside each rank, MoE loads summed over the ranks as the trainer does.
std::vector<Trace> train_on_ranks(int world, bool moe, int64_t micro) {
  std::vector<Trace> got(static_cast<size_t>(world));
  auto errors = dist::run_ranks(world, 30, [&](int r, dist::Communicator& c) {
    models::LanguageModel model(tiny_model(moe), 11, 7);  // the same seed on every rank
    Zero1AdamW opt(model.named_parameters(), kOpt, c);
    const models::LoadSum sum = sum_loads_over_ranks(c);
    for (int s = 0; s < kSteps; ++s) {
      got[size_t(r)].losses.push_back(
          data_parallel_forward_backward(model, batch_at(s), micro, Device::kCPU, c, 256));
      opt.step(0.01);
      opt.zero_grad();
      model.after_optimizer_step(sum);
    }
    got[size_t(r)].params = flat_params(model);
    got[size_t(r)].biases = router_biases(model);
  });
  for (const auto& e : errors) EXPECT_EQ(e, "") << "world " << world;
  return got;
}

// Every rank's losses (1e-5), parameters (2e-5) and router biases (bitwise) are the single
// process's, and the ranks hold the same bits.
void expect_trains_like_one(const Trace& want, const std::vector<Trace>& got) {
  const size_t world = got.size();
  for (size_t r = 0; r < world; ++r) {
    const Trace& g = got[r];
    ASSERT_EQ(g.losses.size(), want.losses.size()) << "world " << world << " rank " << r;
    for (size_t s = 0; s < want.losses.size(); ++s)
      EXPECT_NEAR(g.losses[s], want.losses[s], 1e-5)
          << "world " << world << " rank " << r << " step " << s;
    ASSERT_EQ(g.params.size(), want.params.size());
    double max_err = 0;
    for (size_t i = 0; i < g.params.size(); ++i)
      max_err = std::max(max_err, std::abs(double(g.params[i]) - want.params[i]));
    EXPECT_LT(max_err, 2e-5) << "world " << world << " rank " << r;
    EXPECT_EQ(g.biases, want.biases) << "world " << world << " rank " << r;
    // Every rank received the same gathered parameters.
    EXPECT_EQ(g.params, got[0].params) << "world " << world << " rank " << r;
  }
}

}  // namespace

TEST(DataParallel, TwoAndThreeRanksTrainLikeOneWithTheSameGlobalBatch) {
  const Trace want = single_run();
  for (int world : {1, 2, 3})  // with train.grad_accum 2 inside each of 3 ranks
    expect_trains_like_one(want, train_on_ranks(world, false, world == 3 ? 2 : 1));
}

// MoE: the routers' correction biases move by the loads of the global batch (summed over the
// ranks), so 2 and 3 ranks keep training as one process does; the biases get no gradient on
// any rank and so no optimizer update, as in one process.
TEST(DataParallel, MoeBiasUpdatesFollowTheGlobalLoadsOnTwoAndThreeRanks) {
  const Trace want = single_run(/*moe=*/true);
  // The biases did move from their zeros (else a wrong load sum could pass unseen).
  ASSERT_FALSE(want.biases.empty());
  EXPECT_TRUE(std::any_of(want.biases.begin(), want.biases.end(), [](float b) { return b != 0; }));
  for (int world : {2, 3}) expect_trains_like_one(want, train_on_ranks(world, true, 1));
}

TEST(DataParallel, AGlobalBatchThatDoesNotDivideIsRefusedOnEveryRank) {
  auto errors = dist::run_ranks(4, 10, [](int, dist::Communicator& c) {
    models::LanguageModel model(tiny_model(), 11, 7);
    data_parallel_forward_backward(model, batch_at(0), 1, Device::kCPU, c, 256);
  });
  for (const auto& e : errors)
    EXPECT_NE(e.find("train.batch_size 6 does not divide by the 4 ranks"), std::string::npos) << e;
}

}  // namespace kimi
