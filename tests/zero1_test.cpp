// ZeRO-1 AdamW on 1, 2 and 3 ranks against optim::AdamW on odd parameter counts (and more ranks
// than a parameter has elements), and a 2-rank state resumed on 1 rank and on 3.
#include "trainer/zero1.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "core/dist/communicator.h"
#include "tests/dist_ranks.h"
#include "trainer/data_parallel.h"

using namespace kimi;

namespace {

// Odd shapes; "norm.weight" is 1-d (no decay by the default filter), "bias" has 2 elements so
// the third rank's slice is empty.
nn::NamedTensors make_params() {
  nn::NamedTensors ps;
  const std::vector<std::pair<std::string, Shape>> shapes{
      {"w1", {3, 7}}, {"norm.weight", {5}}, {"bias", {2}}, {"w2", {1, 1}}};
  int seed = 0;
  for (const auto& [name, shape] : shapes) {
    Tensor p = Tensor::zeros(shape);
    for (int64_t k = 0; k < p.numel(); ++k) p.data<float>()[k] = 0.05f * float((seed++ % 13) - 6);
    p.set_requires_grad(true);
    ps.emplace_back(name, p);
  }
  return ps;
}

// The gradient every rank sees at a step (as if already all-reduced): a function of the step.
void set_grads(nn::NamedTensors& ps, int step) {
  int k0 = 0;
  for (auto& [name, p] : ps) {
    Tensor g = Tensor::empty(p.shape());
    for (int64_t k = 0; k < p.numel(); ++k)
      g.data<float>()[k] = 0.1f * float(((k0 + k) * 7 + step * 3) % 11) - 0.45f;
    k0 += int(p.numel());
    p.set_grad(g);
  }
}

std::vector<float> flat(const nn::NamedTensors& ps) {
  std::vector<float> out;
  for (const auto& [n, p] : ps)
    for (float x : p.to_vector<float>()) out.push_back(x);
  return out;
}

const optim::AdamWOptions kOpt{0.9, 0.95, 1e-8, 0.1};

void expect_near(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6) << what << " element " << i;
}

}  // namespace

TEST(Zero1AdamW, ShardedUpdatesMatchAdamWOnOddCountsWithOneTwoAndThreeRanks) {
  nn::NamedTensors ref = make_params();
  optim::AdamW adam(ref, kOpt);
  for (int s = 0; s < 3; ++s) {
    set_grads(ref, s);
    adam.step(0.01 * (s + 1));
  }
  const std::vector<float> want = flat(ref);
  const auto want_state = adam.state_dict();
  for (int world : {1, 2, 3}) {
    std::vector<std::vector<float>> got(static_cast<size_t>(world));
    std::map<std::string, Tensor> state0;
    auto errors = dist::run_ranks(world, 20, [&](int r, dist::Communicator& c) {
      nn::NamedTensors ps = make_params();
      Zero1AdamW z(ps, kOpt, c);
      for (int s = 0; s < 3; ++s) {
        set_grads(ps, s);
        z.step(0.01 * (s + 1));
      }
      got[size_t(r)] = flat(ps);
      auto st = z.state_dict();
      if (r == 0) state0 = st;
    });
    for (const auto& e : errors) ASSERT_EQ(e, "") << "world " << world;
    for (int r = 0; r < world; ++r) expect_near(got[size_t(r)], want, "parameters");
    for (const auto& [key, t] : want_state)
      expect_near(state0.at(key).to_vector<float>(), t.to_vector<float>(), key.c_str());
  }
}

TEST(Zero1AdamW, ATwoRankStateResumesOnOneRankAndOnThree) {
  // Reference: 4 unbroken AdamW steps.
  nn::NamedTensors ref = make_params();
  optim::AdamW adam(ref, kOpt);
  for (int s = 0; s < 4; ++s) {
    set_grads(ref, s);
    adam.step(0.02);
  }
  // 2 steps on 2 ranks, saved (full state plus parameters).
  std::map<std::string, Tensor> saved;
  std::vector<float> params_after_2;
  auto errors = dist::run_ranks(2, 20, [&](int r, dist::Communicator& c) {
    nn::NamedTensors ps = make_params();
    Zero1AdamW z(ps, kOpt, c);
    for (int s = 0; s < 2; ++s) {
      set_grads(ps, s);
      z.step(0.02);
    }
    auto st = z.state_dict();
    if (r == 0) {
      saved = st;
      params_after_2 = flat(ps);
    }
  });
  for (const auto& e : errors) ASSERT_EQ(e, "");
  for (int world : {1, 3}) {
    std::vector<std::vector<float>> got(static_cast<size_t>(world));
    errors = dist::run_ranks(world, 20, [&](int r, dist::Communicator& c) {
      nn::NamedTensors ps = make_params();
      size_t at = 0;
      for (auto& [n, p] : ps)
        for (int64_t k = 0; k < p.numel(); ++k) p.data<float>()[k] = params_after_2[at++];
      Zero1AdamW z(ps, kOpt, c);
      z.load_state_dict(saved);
      for (int s = 2; s < 4; ++s) {
        set_grads(ps, s);
        z.step(0.02);
      }
      got[size_t(r)] = flat(ps);
    });
    for (const auto& e : errors) ASSERT_EQ(e, "") << "world " << world;
    for (int r = 0; r < world; ++r) expect_near(got[size_t(r)], flat(ref), "resumed parameters");
  }
}

TEST(Zero1AdamW, AStateWithoutAMomentIsOneLineNamingTheKey) {
  auto errors = dist::run_ranks(1, 5, [](int, dist::Communicator& c) {
    nn::NamedTensors ps = make_params();
    Zero1AdamW z(ps, kOpt, c);
    z.load_state_dict({});
  });
  EXPECT_NE(errors[0].find("optimizer state is missing 'optim.m.w1'"), std::string::npos)
      << errors[0];
}

TEST(DataParallelRows, RanksTakeContiguousBlocksAndAnIndivisibleBatchIsOneLine) {
  EXPECT_EQ(rank_rows(12, 3, 0).begin, 0);
  EXPECT_EQ(rank_rows(12, 3, 2).begin, 8);
  EXPECT_EQ(rank_rows(12, 3, 2).count, 4);
  EXPECT_EQ(rank_rows(7, 1, 0).count, 7);
  try {
    rank_rows(10, 3, 1);
    FAIL() << "a batch of 10 rows on 3 ranks was split";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch_size 10 does not divide by the 3 ranks"),
              std::string::npos)
        << e.what();
  }
}
