// The TCP communicator (issue 14), each rank a thread of this process with its own sockets, as
// separate processes would have: collectives on odd sizes, shard ranges, and the failure lines
// (a rank that dies, one that hangs, one that never comes, NCCL asked for without NCCL).
#include "core/dist/communicator.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "core/dist/grad_buckets.h"
#include "core/dist/overlapped_reducer.h"
#include "core/tensor/error.h"
#include "tests/dist_ranks.h"

using namespace kimi;
using namespace kimi::dist;

namespace {

// Inexact floats (so the order of the additions shows), computed once into a table: with
// -march=native the compiler may contract the formula into an FMA at one call site and not at
// another, and the test would then compare two roundings of the same value.
float value(int rank, size_t i) {
  static const std::vector<std::vector<float>> table = [] {
    std::vector<std::vector<float>> t(4, std::vector<float>(2100));
    for (size_t r = 0; r < t.size(); ++r)
      for (size_t k = 0; k < t[r].size(); ++k)
        t[r][k] = std::sin(float(r * 2100 + k) * 0.37f) * float(1 + k % 5) - 0.01f * float(k);
    return t;
  }();
  return table.at(size_t(rank)).at(i);
}

}  // namespace

TEST(ShardRange, CoversOddCountsContiguouslyWithinOneElement) {
  for (size_t n : {0u, 1u, 2u, 7u, 10u, 1001u})
    for (int w : {1, 2, 3, 4, 8}) {
      size_t next = 0, lo = n, hi = 0;
      for (int r = 0; r < w; ++r) {
        const ShardRange s = shard_range(n, w, r);
        EXPECT_EQ(s.begin, next) << "n=" << n << " w=" << w << " r=" << r;
        next = s.end;
        lo = std::min(lo, s.size());
        hi = std::max(hi, s.size());
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(hi - std::min(lo, hi), 1u);
    }
  EXPECT_EQ(shard_range(7, 3, 0).size(), 3u);
  EXPECT_EQ(shard_range(7, 3, 2).size(), 2u);
}

TEST(TcpCommunicator, CollectivesOnOddSizesMatchTheRankOrderedSum) {
  for (int world : {2, 3}) {
    for (size_t n : {1u, 7u, 2053u}) {
      std::vector<std::vector<float>> reduced(static_cast<size_t>(world)),
          scattered(static_cast<size_t>(world)), gathered(static_cast<size_t>(world)),
          bcast(static_cast<size_t>(world));
      auto errors = run_ranks(world, 20, [&](int r, Communicator& c) {
        ASSERT_EQ(c.rank(), r);
        ASSERT_EQ(c.world_size(), world);
        std::vector<float> x(n);
        for (size_t i = 0; i < n; ++i) x[i] = value(r, i);
        std::vector<float> ar = x;
        c.all_reduce_sum(ar.data(), n);
        reduced[size_t(r)] = ar;
        const ShardRange s = shard_range(n, world, r);
        std::vector<float> rs(s.size());
        c.reduce_scatter_sum(x.data(), n, rs.data());
        scattered[size_t(r)] = rs;
        std::vector<float> all(n);
        c.all_gather(rs.data(), n, all.data());
        gathered[size_t(r)] = all;
        std::vector<float> b = x;
        c.broadcast(b.data(), n, world - 1);
        bcast[size_t(r)] = b;
        c.barrier();
      });
      for (const auto& e : errors) ASSERT_EQ(e, "");
      for (size_t i = 0; i < n; ++i) {
        float want = value(0, i);
        for (int r = 1; r < world; ++r) want += value(r, i);
        for (int r = 0; r < world; ++r) {
          EXPECT_EQ(reduced[size_t(r)][i], want) << "all_reduce w=" << world << " i=" << i;
          EXPECT_EQ(gathered[size_t(r)][i], want) << "all_gather w=" << world << " i=" << i;
          EXPECT_EQ(bcast[size_t(r)][i], value(world - 1, i));
        }
      }
      for (int r = 0; r < world; ++r) {
        const ShardRange s = shard_range(n, world, r);
        ASSERT_EQ(scattered[size_t(r)].size(), s.size());
        for (size_t i = 0; i < s.size(); ++i)
          EXPECT_EQ(scattered[size_t(r)][i], reduced[0][s.begin + i]);
      }
    }
  }
}

TEST(TcpCommunicator, ARankThatDiesFailsTheOthersWithALineNamingIt) {
  auto errors = run_ranks(3, 20, [](int r, Communicator& c) {
    if (r == 2) return;  // its sockets close as if the process had died
    float x = 1;
    c.all_reduce_sum(&x, 1);
  });
  EXPECT_NE(errors[0].find("lost rank 2: connection closed"), std::string::npos) << errors[0];
  // Rank 1 is then left by rank 0 (which threw) instead of waiting for ever.
  EXPECT_NE(errors[1].find("lost rank 0"), std::string::npos) << errors[1];
  EXPECT_EQ(errors[2], "");
}

TEST(TcpCommunicator, AHungRankFailsTheOthersAfterTheTimeout) {
  std::atomic<bool> done{false};
  auto errors = run_ranks(2, 1, [&](int r, Communicator& c) {
    if (r == 1) {
      while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      return;
    }
    float x = 1;
    try {
      c.all_reduce_sum(&x, 1);
    } catch (...) {
      done = true;
      throw;
    }
    done = true;
  });
  EXPECT_NE(errors[0].find("lost rank 1: no data before the timeout"), std::string::npos)
      << errors[0];
}

TEST(TcpCommunicator, ARankThatNeverJoinsFailsRankZeroAfterTheTimeout) {
  RendezvousInfo info{0, 2, "127.0.0.1", free_port(), 1};
  try {
    make_tcp_communicator(info);
    FAIL() << "rank 0 waited for a rank that never came and did not fail";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("saw 1 of 2 ranks join"), std::string::npos) << e.what();
  }
}

TEST(TcpCommunicator, DifferentCollectivesOnTwoRanksAreOneLine) {
  auto errors = run_ranks(2, 5, [](int r, Communicator& c) {
    std::vector<float> x(5, 1.f);
    if (r == 0)
      c.all_reduce_sum(x.data(), 5);
    else
      c.all_reduce_sum(x.data(), 4);
  });
  EXPECT_NE(errors[0].find("rank 1 called all_reduce(n=4"), std::string::npos) << errors[0];
}

TEST(Communicator, NcclWithoutNcclInTheBuildIsOneLineAndTcpWithOneRankIsLocal) {
  RendezvousInfo one;
  if (!nccl_built()) {
    try {
      make_communicator("nccl", one);
      FAIL() << "nccl asked for in a build without NCCL did not fail";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("this build has no NCCL"), std::string::npos);
    }
  }
  EXPECT_THROW(make_communicator("mpi", one), UserError);
  auto c = make_communicator("tcp", one);
  std::vector<float> x{1, 2, 3}, out(3);
  c->all_reduce_sum(x.data(), 3);
  c->all_gather(x.data(), 3, out.data());
  EXPECT_EQ(out, x);
}

TEST(Communicator, RendezvousFromTheEnvironmentRefusesBadValues) {
  ::setenv("WORLD_SIZE", "3", 1);
  ::setenv("RANK", "2", 1);
  ::setenv("MASTER_PORT", "29611", 1);
  RendezvousInfo info = rendezvous_from_env();
  EXPECT_EQ(info.world_size, 3);
  EXPECT_EQ(info.rank, 2);
  EXPECT_EQ(info.master_port, 29611);
  ::setenv("RANK", "3", 1);
  EXPECT_THROW(rendezvous_from_env(), UserError);
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("RANK");
  ::unsetenv("MASTER_PORT");
  EXPECT_EQ(rendezvous_from_env().world_size, 1);
}

TEST(GradBuckets, PlanPacksInOrderAndGivesABigParameterABucketOfItsOwn) {
  std::vector<Tensor> ps;
  for (int64_t n : {5, 1, 7, 3}) ps.push_back(Tensor::zeros({n}));
  using Plan = std::vector<std::vector<size_t>>;
  EXPECT_EQ(plan_buckets(ps, 16), (Plan{{0}, {1}, {2}, {3}}));
  EXPECT_EQ(plan_buckets(ps, 48), (Plan{{0, 1}, {2, 3}}));
  EXPECT_EQ(plan_buckets(ps, 64), (Plan{{0, 1, 2, 3}}));
}

TEST(GradBuckets, ThreeRanksSumOddGradientsInSmallBucketsAndAMissingGradientCountsAsZero) {
  const std::vector<int64_t> sizes{5, 1, 7, 3};
  std::vector<std::vector<std::vector<float>>> got(3);
  auto errors = run_ranks(3, 20, [&](int r, Communicator& c) {
    std::vector<Tensor> ps;
    for (size_t i = 0; i < sizes.size(); ++i) {
      Tensor p = Tensor::zeros({sizes[i]});
      p.set_requires_grad(true);
      if (!(r == 1 && i == 2)) {
        Tensor g = Tensor::empty({sizes[i]});
        for (int64_t k = 0; k < sizes[i]; ++k) g.data<float>()[k] = value(r, size_t(k) + 10 * i);
        p.set_grad(g);
      }
      ps.push_back(p);
    }
    all_reduce_grads(ps, c, 16, 0.5f);
    for (const auto& p : ps) got[size_t(r)].push_back(p.grad().to_vector<float>());
  });
  for (const auto& e : errors) ASSERT_EQ(e, "");
  for (size_t i = 0; i < sizes.size(); ++i)
    for (int64_t k = 0; k < sizes[i]; ++k) {
      float want = 0;
      for (int r = 0; r < 3; ++r)
        if (!(r == 1 && i == 2)) want += value(r, size_t(k) + 10 * i);
      for (int r = 0; r < 3; ++r)
        EXPECT_EQ(got[size_t(r)][i][size_t(k)], 0.5f * want) << "param " << i << " k " << k;
    }
}

namespace kimi::dist {
namespace {

// Parameters of `sizes` with gradients value(rank, 10 * i + k), except where `has_grad` says no.
std::vector<Tensor> params_with_grads(int rank, const std::vector<int64_t>& sizes,
                                      const std::function<bool(int, size_t)>& has_grad) {
  std::vector<Tensor> ps;
  for (size_t i = 0; i < sizes.size(); ++i) {
    Tensor p = Tensor::zeros({sizes[i]});
    p.set_requires_grad(true);
    if (has_grad(rank, i)) {
      Tensor g = Tensor::empty({sizes[i]});
      for (int64_t k = 0; k < sizes[i]; ++k) g.data<float>()[k] = value(rank, size_t(k) + 10 * i);
      p.set_grad(g);
    }
    ps.push_back(p);
  }
  return ps;
}

// The overlapped reducer gives bitwise the sums of all_reduce_grads (same weights), whatever
// order the ranks report their gradients in, for a rank that reports none (no labelled rows:
// it runs no backward), and for gradients never reported (earlier micro-batches only). A
// parameter without a gradient on every rank (the last) keeps none. all_reduce_grads with the
// rank's weight given to it (what data-parallel steps on GPUs call) gives the same sums.
TEST(OverlappedReducer, SumsAsAllReduceGradsWhateverTheRanksReportAndWhen) {
  const std::vector<int64_t> sizes{5, 1, 7, 3, 4};
  const auto has_grad = [](int r, size_t i) { return !(r == 1 && i == 2) && i != 4; };
  const std::vector<double> weight{0.25, 0.5, 0.25};
  std::vector<std::vector<std::vector<float>>> want(3), got(3);
  auto errors = run_ranks(3, 20, [&](int r, Communicator& c) {
    auto ps = params_with_grads(r, sizes, has_grad);
    for (auto& p : ps) {  // the old path: scale in place, then sum
      if (!p.grad().defined()) continue;
      float* d = p.grad().data<float>();
      for (int64_t k = 0; k < p.numel(); ++k) d[k] = float(double(d[k]) * weight[size_t(r)]);
    }
    all_reduce_grads(ps, c, 16, 1.0f);  // (sets the last one's to zeros)
    for (size_t i = 0; i + 1 < ps.size(); ++i)
      want[size_t(r)].push_back(ps[i].grad().to_vector<float>());

    auto qs = params_with_grads(r, sizes, has_grad);
    OverlappedReducer red(qs, c, 16, weight[size_t(r)]);
    const LeafGradReady hook = red.hook();
    if (r == 0)
      for (size_t i = sizes.size(); i-- > 0;) hook(qs[i]);  // backward order
    if (r == 2)
      for (size_t i : {0, 3, 1}) hook(qs[i]);  // another order; 2 and 4 never reported
    red.finish();                              // rank 1 reports nothing
    for (size_t i = 0; i + 1 < qs.size(); ++i)
      got[size_t(r)].push_back(qs[i].grad().to_vector<float>());
    EXPECT_FALSE(qs.back().grad().defined()) << "rank " << r;

    // The GPU path's form (after the backward, this rank's weight applied while packing).
    auto ws = params_with_grads(r, sizes, has_grad);
    all_reduce_grads(ws, c, 16, 1.0f, float(weight[size_t(r)]));
    for (size_t i = 0; i + 1 < ws.size(); ++i)
      EXPECT_EQ(ws[i].grad().to_vector<float>(), want[size_t(r)][i]) << "rank " << r << " #" << i;
  });
  for (const auto& e : errors) ASSERT_EQ(e, "");
  for (int r = 0; r < 3; ++r) EXPECT_EQ(got[size_t(r)], want[size_t(r)]) << "rank " << r;
  EXPECT_EQ(got[0], got[2]);
}

// The point of it: a bucket whose gradients are all reported is summed before the backward
// ends (before finish()), while the rest of the gradients are still being computed.
TEST(OverlappedReducer, AFullBucketIsSummedBeforeTheBackwardEnds) {
  const std::vector<int64_t> sizes{4, 4, 4, 4};
  std::vector<size_t> early(2);
  auto errors = run_ranks(2, 20, [&](int r, Communicator& c) {
    auto ps = params_with_grads(r, sizes, [](int, size_t) { return true; });
    OverlappedReducer red(ps, c, 16, 1.0);  // one parameter a bucket, the last one first
    red.hook()(ps[3]);
    for (int i = 0; i < 500 && red.buckets_started_early() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    early[size_t(r)] = red.buckets_started_early();
    for (size_t i : {2, 1, 0}) red.hook()(ps[i]);
    red.finish();
    EXPECT_EQ(red.num_buckets(), 4u);
    EXPECT_EQ(ps[3].grad().to_vector<float>()[0], value(0, 30) + value(1, 30));
  });
  for (const auto& e : errors) ASSERT_EQ(e, "");
  EXPECT_GE(early[0], 1u);
  EXPECT_GE(early[1], 1u);
}

}  // namespace
}  // namespace kimi::dist
