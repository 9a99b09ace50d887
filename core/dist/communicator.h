// Collectives between the ranks of a data-parallel run (issue 14). One interface, two transports:
// TCP between processes of one host (always built; what CI tests; host buffers) and NCCL (the
// CUDA backend's, core/cuda/dist, where the build finds nccl.h; device buffers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace kimi::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In place: every rank ends with the sum over ranks, added in rank order 0, 1, ... so that the
  // result is bitwise the same on every rank and from run to run.
  virtual void all_reduce_sum(float* data, size_t n) = 0;
  // Root's n floats to every rank.
  virtual void broadcast(float* data, size_t n, int root) = 0;
  // data holds n floats on every rank; afterwards out (count shard_size(n, w, r)) holds this
  // rank's slice of the rank-ordered sum (ZeRO-1: each rank updates its shard of the gradient).
  virtual void reduce_scatter_sum(const float* data, size_t n, float* out) = 0;
  // Each rank gives its slice (shard_range of n); every rank receives the whole n floats.
  virtual void all_gather(const float* shard, size_t n, float* out) = 0;
  virtual void barrier() = 0;
  // Whether device (GPU) buffers may be given (NCCL); host buffers are always taken.
  virtual bool takes_device_buffers() const { return false; }
};

// Rank r's slice [begin, end) of n elements over w ranks: the first n % w ranks get one more, so
// odd counts work and no slice differs from another by more than one element.
struct ShardRange {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};
ShardRange shard_range(size_t n, int world_size, int rank);

// Where the ranks meet, as torchrun sets it: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
struct RendezvousInfo {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double timeout_s = 60;  // a peer silent this long (dead, hung) fails the collective
  int local_rank = -1;    // LOCAL_RANK: this rank's GPU (NCCL); -1 when unset
  // KIMI_DIST_BACKEND ("tcp" | "nccl"): asks for a data-parallel run even of one rank (what
  // `run --gpus N` sets); "" when unset, and then only WORLD_SIZE > 1 makes one.
  std::string backend;
};
// From the environment; nullopt-like: world_size 1 when WORLD_SIZE is unset. Bad values throw
// UserError naming the variable.
RendezvousInfo rendezvous_from_env();
// A run is data-parallel when WORLD_SIZE > 1 or KIMI_DIST_BACKEND is set.
bool data_parallel(const RendezvousInfo& info);

// Star over TCP: every rank connects to rank 0, which sums in rank order and sends back. Plenty
// for CPU tests and small runs; a dead peer gives one line naming it instead of a hang.
std::unique_ptr<Communicator> make_tcp_communicator(const RendezvousInfo& info);
// A world of one: collectives are copies (the trainer's code path stays the same).
std::unique_ptr<Communicator> make_single_communicator();
// "tcp" or "nccl"; nccl without NCCL in the build is a UserError, never a silent fallback.
std::unique_ptr<Communicator> make_communicator(const std::string& backend,
                                                const RendezvousInfo& info);
// Whether this binary carries the NCCL transport (the CUDA backend registers it when linked,
// as it registers its kernels; libnccl.so.2 itself is loaded when a communicator is made).
bool nccl_built();
using NcclFactory = std::unique_ptr<Communicator> (*)(const RendezvousInfo&);
void register_nccl_factory(NcclFactory f);

}  // namespace kimi::dist
