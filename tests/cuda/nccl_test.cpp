// The NCCL transport (core/cuda/dist/nccl_communicator.cpp) on device buffers. A world of one on
// any GPU: every collective keeps the interface's meaning (the sum of one rank, the shard and the
// gather of one). With two or more GPUs (counted in /proc/driver/nvidia/gpus, so that the parent
// never initialises CUDA before forking), one forked process per GPU, up to 4: all-reduce,
// broadcast, reduce-scatter and all-gather of odd sizes (shard_range's uneven pieces) against
// the host's sums within float rounding, on device buffers, host buffers (staged) and a mix.
// NCCL_NVLS_ENABLE=0 (no NVLink multicast) is set here.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/dist/communicator.h"
#include "tests/dist_ranks.h"

namespace kimi::dist {
namespace {

float value(int rank, size_t i) {
  return std::sin(0.37f * float(i) + float(rank)) * float(1 + (i + size_t(rank)) % 5);
}

struct DeviceFloats {
  explicit DeviceFloats(const std::vector<float>& h) : n(h.size()) {
    KIMI_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * 4));
    if (n) KIMI_CUDA_CHECK(cudaMemcpy(p, h.data(), n * 4, cudaMemcpyHostToDevice));
  }
  ~DeviceFloats() { cudaFree(p); }
  std::vector<float> host() const {
    std::vector<float> h(n);
    if (n) KIMI_CUDA_CHECK(cudaMemcpy(h.data(), p, n * 4, cudaMemcpyDeviceToHost));
    return h;
  }
  float* p = nullptr;
  size_t n;
};

// Every collective on `comm` for sizes 1, 7 and 2053; the number of mismatches.
int check_collectives(Communicator& comm) {
  const int w = comm.world_size(), r = comm.rank();
  int bad = 0;
  auto near = [&](float got, double want) {
    if (std::abs(got - want) > 1e-5 * (1 + std::abs(want))) ++bad;
  };
  for (size_t n : {1u, 7u, 2053u}) {
    std::vector<float> mine(n);
    for (size_t i = 0; i < n; ++i) mine[i] = value(r, i);
    std::vector<double> sum(n, 0.0);
    for (int q = 0; q < w; ++q)
      for (size_t i = 0; i < n; ++i) sum[i] += value(q, i);
    DeviceFloats x(mine);
    comm.all_reduce_sum(x.p, n);
    const std::vector<float> reduced = x.host();
    for (size_t i = 0; i < n; ++i) near(reduced[i], sum[i]);
    DeviceFloats y(mine);
    comm.broadcast(y.p, n, w - 1);
    const std::vector<float> b = y.host();
    for (size_t i = 0; i < n; ++i) near(b[i], value(w - 1, i));
    const ShardRange s = shard_range(n, w, r);
    DeviceFloats in(mine), out(std::vector<float>(s.size(), -1.f));
    comm.reduce_scatter_sum(in.p, n, out.p);
    const std::vector<float> shard = out.host();
    for (size_t i = 0; i < s.size(); ++i) near(shard[i], sum[s.begin + i]);
    std::vector<float> piece(s.size());
    for (size_t i = 0; i < s.size(); ++i) piece[i] = value(r, s.begin + i) + 1.f;
    DeviceFloats sh(piece), all(std::vector<float>(n, -1.f));
    comm.all_gather(sh.p, n, all.p);
    const std::vector<float> g = all.host();
    for (int q = 0; q < w; ++q) {
      const ShardRange t = shard_range(n, w, q);
      for (size_t i = t.begin; i < t.end; ++i) near(g[i], value(q, i) + 1.0);
    }
    // Host buffers are staged through the device (and a host shard into a device gather).
    std::vector<float> hx = mine;
    comm.all_reduce_sum(hx.data(), n);
    for (size_t i = 0; i < n; ++i) near(hx[i], sum[i]);
    std::vector<float> hout(s.size(), -1.f);
    comm.reduce_scatter_sum(mine.data(), n, hout.data());
    for (size_t i = 0; i < s.size(); ++i) near(hout[i], sum[s.begin + i]);
    DeviceFloats dall(std::vector<float>(n, -1.f));
    comm.all_gather(piece.data(), n, dall.p);
    const std::vector<float> g2 = dall.host();
    std::vector<float> hall(n, -1.f);
    comm.all_gather(sh.p, n, hall.data());
    for (int q = 0; q < w; ++q) {
      const ShardRange t = shard_range(n, w, q);
      for (size_t i = t.begin; i < t.end; ++i) near(g2[i], value(q, i) + 1.0);
      for (size_t i = t.begin; i < t.end; ++i) near(hall[i], value(q, i) + 1.0);
    }
    comm.barrier();
  }
  return bad;
}

int gpus_on_this_host() {
  std::error_code ec;
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/driver/nvidia/gpus", ec)) {
    (void)e;
    ++n;
  }
  return n;
}

TEST(Nccl, WorldOfOneKeepsEveryCollectivesMeaning) {
  if (!nccl_built()) GTEST_SKIP() << "built without nccl.h";
  if (!cuda::device_present()) GTEST_SKIP() << "no CUDA device";
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  auto comm = make_communicator("nccl", RendezvousInfo{0, 1, "127.0.0.1", free_port(), 60});
  EXPECT_EQ(comm->world_size(), 1);
  EXPECT_EQ(check_collectives(*comm), 0);
}

TEST(Nccl, OneProcessPerGpuAgainstTheHostSums) {
  if (!nccl_built()) GTEST_SKIP() << "built without nccl.h";
  const int w = std::min(gpus_on_this_host(), 4);
  if (w < 2) GTEST_SKIP() << w << " GPU(s) on this host: the ranks need one each";
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  const int port = free_port();
  std::vector<pid_t> kids;
  for (int r = 0; r < w; ++r) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {  // a rank: its own GPU, its own CUDA context
      int code = 1;
      try {
        KIMI_CUDA_CHECK(cudaSetDevice(r));
        auto comm = make_communicator("nccl", RendezvousInfo{r, w, "127.0.0.1", port, 60});
        code = check_collectives(*comm) == 0 ? 0 : 2;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
      }
      std::fflush(nullptr);
      _exit(code);
    }
    kids.push_back(pid);
  }
  for (int r = 0; r < w; ++r) {
    int status = 0;
    waitpid(kids[size_t(r)], &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "rank " << r << " of " << w << " (exit " << WEXITSTATUS(status) << ")";
  }
}

}  // namespace
}  // namespace kimi::dist
