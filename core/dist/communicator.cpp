// The parts common to every transport: shard ranges, the environment, the world of one and the
// choice of transport.
#include "core/dist/communicator.h"

#include <cstdlib>
#include <cstring>

#include "core/tensor/error.h"

namespace kimi::dist {
namespace {

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(float*, size_t) override {}
  void broadcast(float*, size_t, int root) override {
    KIMI_CHECK(root == 0, "broadcast: root {} in a world of one", root);
  }
  void reduce_scatter_sum(const float* data, size_t n, float* out) override {
    std::memcpy(out, data, n * sizeof(float));
  }
  void all_gather(const float* shard, size_t n, float* out) override {
    std::memcpy(out, shard, n * sizeof(float));
  }
  void barrier() override {}
};

NcclFactory& nccl_factory() {
  static NcclFactory f = nullptr;
  return f;
}

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    throw UserError(fmt::format("dist: {}='{}' is not an integer in [{}, {}]", name, v, lo, hi));
  return int(x);
}

}  // namespace

ShardRange shard_range(size_t n, int world_size, int rank) {
  const size_t w = size_t(world_size), r = size_t(rank);
  const size_t base = n / w, extra = n % w;
  const size_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

RendezvousInfo rendezvous_from_env() {
  RendezvousInfo info;
  info.world_size = env_int("WORLD_SIZE", 1, 1, 4096);
  info.rank = env_int("RANK", 0, 0, info.world_size - 1);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) info.master_addr = a;
  info.master_port = env_int("MASTER_PORT", info.master_port, 1, 65535);
  info.timeout_s = env_int("KIMI_DIST_TIMEOUT_S", int(info.timeout_s), 1, 86400);
  info.local_rank = env_int("LOCAL_RANK", -1, 0, 4095);
  if (const char* b = std::getenv("KIMI_DIST_BACKEND"); b && *b) {
    info.backend = b;
    if (info.backend != "tcp" && info.backend != "nccl")
      throw UserError(fmt::format("dist: KIMI_DIST_BACKEND='{}': give tcp or nccl", b));
  }
  return info;
}

bool data_parallel(const RendezvousInfo& info) {
  return info.world_size > 1 || !info.backend.empty();
}

std::unique_ptr<Communicator> make_single_communicator() {
  return std::make_unique<SingleCommunicator>();
}

bool nccl_built() { return nccl_factory() != nullptr; }

void register_nccl_factory(NcclFactory f) { nccl_factory() = f; }

std::unique_ptr<Communicator> make_communicator(const std::string& backend,
                                                const RendezvousInfo& info) {
  if (backend == "tcp") return make_tcp_communicator(info);
  if (backend == "nccl") {
    if (!nccl_built())
      throw UserError(
          "dist: backend nccl asked for, but this build has no NCCL (configure with "
          "-DKIMI_LAB_CUDA=ON where nccl.h is found); use --device cpu for tcp");
    return nccl_factory()(info);
  }
  throw UserError(fmt::format("dist: backend '{}' unknown (tcp or nccl)", backend));
}

}  // namespace kimi::dist
