// The NCCL transport of dist::Communicator (core/dist/communicator.h), for ranks that each drive
// one GPU. Buffers are device memory of this process's current GPU, or host memory, which is
// staged through a device buffer (the trainer's control messages, ZeRO-1's host vectors: small);
// every collective runs on the CUDA backend's stream (kimi::cuda::stream(), after the kernels that
// produced the data) and has finished when the call returns, as the interface promises. The ranks
// meet through the TCP star first (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), which carries
// rank 0's ncclUniqueId to the others; NCCL then builds its own rings.
// Sums come back the same on every rank (NCCL's reduction order, not the TCP star's rank order).
// NCCL's reduce-scatter and all-gather take equal pieces; shard_range's first n % w ranks hold
// one element more, so both go through a padded device buffer of w x ceil(n / w) floats.
// Compiled where CMake finds nccl.h (KIMI_LAB_NCCL); libnccl.so.2 is opened with dlopen on the
// first communicator, so kimi-lab starts (and every other path runs) where no NCCL library is
// installed, and only `nccl` asks for one.
#ifdef KIMI_LAB_NCCL

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <fmt/format.h>
#include <nccl.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/dist/communicator.h"
#include "core/tensor/error.h"

namespace kimi::cuda {
namespace {

struct NcclApi {
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) comm_init_rank = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclBroadcast) broadcast = nullptr;
  decltype(&ncclReduceScatter) reduce_scatter = nullptr;
  decltype(&ncclAllGather) all_gather = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
};

// KIMI_NCCL_LIBRARY names another file; PyTorch's wheels ship one in
// site-packages/nvidia/nccl/lib (put that folder on LD_LIBRARY_PATH).
const NcclApi& nccl_api() {
  static const NcclApi api = [] {
    const char* env = std::getenv("KIMI_NCCL_LIBRARY");
    const std::string name = env && *env ? env : "libnccl.so.2";
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!h)
      throw UserError(fmt::format(
          "dist: nccl: cannot load {} ({}); install NCCL, put the folder that holds it on "
          "LD_LIBRARY_PATH, or name the file in KIMI_NCCL_LIBRARY",
          name, dlerror()));
    auto sym = [&](const char* s) {
      void* f = dlsym(h, s);
      if (!f) throw UserError(fmt::format("dist: nccl: {} has no symbol {}", name, s));
      return f;
    };
    NcclApi a;
    a.get_unique_id = reinterpret_cast<decltype(a.get_unique_id)>(sym("ncclGetUniqueId"));
    a.comm_init_rank = reinterpret_cast<decltype(a.comm_init_rank)>(sym("ncclCommInitRank"));
    a.comm_destroy = reinterpret_cast<decltype(a.comm_destroy)>(sym("ncclCommDestroy"));
    a.all_reduce = reinterpret_cast<decltype(a.all_reduce)>(sym("ncclAllReduce"));
    a.broadcast = reinterpret_cast<decltype(a.broadcast)>(sym("ncclBroadcast"));
    a.reduce_scatter = reinterpret_cast<decltype(a.reduce_scatter)>(sym("ncclReduceScatter"));
    a.all_gather = reinterpret_cast<decltype(a.all_gather)>(sym("ncclAllGather"));
    a.error_string = reinterpret_cast<decltype(a.error_string)>(sym("ncclGetErrorString"));
    return a;
  }();
  return api;
}

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    throw Error(fmt::format("dist: nccl {} failed: {}", what, nccl_api().error_string(r)));
}

// A device buffer of at least the floats asked for, grown (never shrunk) as sizes need.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (p_) cudaFree(p_);
  }
  float* get(size_t count) {
    if (count > cap_) {
      KIMI_CUDA_CHECK(cudaStreamSynchronize(stream()));  // work queued on the old buffer
      if (p_) KIMI_CUDA_CHECK(cudaFree(p_));
      p_ = nullptr;
      KIMI_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), count * sizeof(float)));
      cap_ = count;
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  size_t cap_ = 0;
};

bool on_host(const void* p) {
  if (p == nullptr) return false;  // an empty piece: nothing is copied either way
  cudaPointerAttributes a{};
  KIMI_CUDA_CHECK(cudaPointerGetAttributes(&a, p));
  return a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged;
}

class NcclCommunicator final : public dist::Communicator {
 public:
  explicit NcclCommunicator(const dist::RendezvousInfo& info)
      : rank_(info.rank), world_(info.world_size), api_(nccl_api()) {
    if (info.local_rank >= 0) {  // one GPU a rank: LOCAL_RANK's, before any CUDA work here
      int count = 0;
      KIMI_CUDA_CHECK(cudaGetDeviceCount(&count));
      if (info.local_rank >= count)
        throw UserError(fmt::format("dist: rank {} has LOCAL_RANK {}, but {} GPU(s) are visible",
                                    info.rank, info.local_rank, count));
      KIMI_CUDA_CHECK(cudaSetDevice(info.local_rank));
    }
    tcp_ = dist::make_tcp_communicator(info);
    ncclUniqueId id{};
    if (rank_ == 0) check(api_.get_unique_id(&id), "GetUniqueId");
    static_assert(sizeof(ncclUniqueId) % sizeof(float) == 0, "the id travels as floats");
    std::array<float, sizeof(ncclUniqueId) / sizeof(float)> words{};
    std::memcpy(words.data(), &id, sizeof id);  // bytes, never added: broadcast copies them
    tcp_->broadcast(words.data(), words.size(), 0);
    std::memcpy(&id, words.data(), sizeof id);
    check(api_.comm_init_rank(&comm_, world_, id, rank_), "CommInitRank");
  }
  ~NcclCommunicator() override {
    if (comm_) api_.comm_destroy(comm_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  bool takes_device_buffers() const override { return true; }

  void all_reduce_sum(float* data, size_t n) override {
    float* d = to_device(data, n, in_);
    check(api_.all_reduce(d, d, n, ncclFloat32, ncclSum, comm_, stream()), "AllReduce");
    to_host(data, d, n);
  }
  void broadcast(float* data, size_t n, int root) override {
    KIMI_CHECK(root >= 0 && root < world_, "broadcast: root {} outside the {} ranks", root, world_);
    float* d = to_device(data, n, in_);
    check(api_.broadcast(d, d, n, ncclFloat32, root, comm_, stream()), "Broadcast");
    to_host(data, d, n);
  }
  // Each rank's shard_range slice to its own padded piece, then NCCL's equal pieces.
  void reduce_scatter_sum(const float* data, size_t n, float* out) override {
    const size_t m = piece(n), w = size_t(world_);
    const float* src = to_device(data, n, in_);
    float* padded = pad_.get(m * (w + 1));
    float* mine = padded + m * w;
    KIMI_CUDA_CHECK(cudaMemsetAsync(padded, 0, m * w * sizeof(float), stream()));
    for (int r = 0; r < world_; ++r) {
      const dist::ShardRange s = dist::shard_range(n, world_, r);
      copy(padded + size_t(r) * m, src + s.begin, s.size());
    }
    check(api_.reduce_scatter(padded, mine, m, ncclFloat32, ncclSum, comm_, stream()),
          "ReduceScatter");
    const size_t k = dist::shard_range(n, world_, rank_).size();
    if (on_host(out)) {
      to_host(out, mine, k);
    } else {
      copy(out, mine, k);
      finish();
    }
  }
  void all_gather(const float* shard, size_t n, float* out) override {
    const size_t m = piece(n), w = size_t(world_);
    const size_t k = dist::shard_range(n, world_, rank_).size();
    const float* src = to_device(shard, k, in_);
    float* gathered = pad_.get(m * (w + 1));
    float* mine = gathered + m * w;
    KIMI_CUDA_CHECK(cudaMemsetAsync(mine, 0, m * sizeof(float), stream()));
    copy(mine, src, k);
    check(api_.all_gather(mine, gathered, m, ncclFloat32, comm_, stream()), "AllGather");
    const bool host = on_host(out);
    float* dst = host ? out_.get(n) : out;
    for (int r = 0; r < world_; ++r) {
      const dist::ShardRange s = dist::shard_range(n, world_, r);
      copy(dst + s.begin, gathered + size_t(r) * m, s.size());
    }
    if (host) {
      to_host(out, dst, n);
    } else {
      finish();
    }
  }
  void barrier() override {
    finish();
    tcp_->barrier();
  }

 private:
  size_t piece(size_t n) const { return (n + size_t(world_) - 1) / size_t(world_); }
  // A host buffer's n floats in `stage` on the device; a device buffer as it is.
  float* to_device(const float* p, size_t n, Scratch& stage) {
    if (!on_host(p)) return const_cast<float*>(p);
    float* d = stage.get(std::max<size_t>(n, 1));
    if (n > 0)
      KIMI_CUDA_CHECK(cudaMemcpyAsync(d, p, n * sizeof(float), cudaMemcpyHostToDevice, stream()));
    return d;
  }
  // The result back where the caller gave it (nothing to do for device memory), then waits.
  void to_host(float* p, const float* d, size_t n) {
    if (p != d && n > 0)
      KIMI_CUDA_CHECK(cudaMemcpyAsync(p, d, n * sizeof(float), cudaMemcpyDeviceToHost, stream()));
    finish();
  }
  void copy(float* dst, const float* src, size_t count) {
    if (count > 0)
      KIMI_CUDA_CHECK(
          cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice, stream()));
  }
  void finish() { KIMI_CUDA_CHECK(cudaStreamSynchronize(stream())); }

  int rank_, world_;
  const NcclApi& api_;
  std::unique_ptr<dist::Communicator> tcp_;
  ncclComm_t comm_ = nullptr;
  Scratch in_, pad_, out_;  // staged host input, NCCL's equal pieces, staged host output
};

const bool registered = [] {
  dist::register_nccl_factory(
      [](const dist::RendezvousInfo& info) -> std::unique_ptr<dist::Communicator> {
        return std::make_unique<NcclCommunicator>(info);
      });
  return true;
}();

}  // namespace
}  // namespace kimi::cuda

#endif  // KIMI_LAB_NCCL
