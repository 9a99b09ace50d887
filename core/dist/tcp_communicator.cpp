// The TCP star: rank 0 accepts one socket per peer and does the arithmetic. Every message starts
// with a header (operation, length) so that ranks calling different collectives fail with a line
// instead of reading each other's floats as garbage.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "core/dist/communicator.h"
#include "core/tensor/error.h"

namespace kimi::dist {
namespace {

enum class Op : uint32_t { kAllReduce = 1, kBroadcast, kReduceScatter, kAllGather, kBarrier };

const char* op_name(uint32_t op) {
  switch (static_cast<Op>(op)) {
    case Op::kAllReduce: return "all_reduce";
    case Op::kBroadcast: return "broadcast";
    case Op::kReduceScatter: return "reduce_scatter";
    case Op::kAllGather: return "all_gather";
    case Op::kBarrier: return "barrier";
  }
  return "unknown";
}

struct Header {
  uint32_t op;
  uint32_t root;
  uint64_t n;
};

class TcpCommunicator final : public Communicator {
 public:
  explicit TcpCommunicator(const RendezvousInfo& info) : info_(info) {
    if (info_.rank == 0)
      accept_peers();
    else
      connect_to_root();
  }
  ~TcpCommunicator() override {
    for (int fd : peers_)
      if (fd >= 0) ::close(fd);
    if (root_fd_ >= 0) ::close(root_fd_);
  }

  int rank() const override { return info_.rank; }
  int world_size() const override { return info_.world_size; }

  void all_reduce_sum(float* data, size_t n) override {
    Header h{uint32_t(Op::kAllReduce), 0, n};
    if (info_.rank != 0) {
      send_to(root_fd_, 0, &h, sizeof h);
      send_to(root_fd_, 0, data, n * sizeof(float));
      recv_from(root_fd_, 0, data, n * sizeof(float));
      return;
    }
    sum_at_root(h, data, n);
    for (int r = 1; r < info_.world_size; ++r) send_to(peers_[r], r, data, n * sizeof(float));
  }

  void broadcast(float* data, size_t n, int root) override {
    KIMI_CHECK(root >= 0 && root < info_.world_size, "broadcast: root {} out of range", root);
    Header h{uint32_t(Op::kBroadcast), uint32_t(root), n};
    if (info_.rank != 0) {
      send_to(root_fd_, 0, &h, sizeof h);
      if (info_.rank == root) send_to(root_fd_, 0, data, n * sizeof(float));
      recv_from(root_fd_, 0, data, n * sizeof(float));
      return;
    }
    for (int r = 1; r < info_.world_size; ++r) expect_header(r, h);
    if (root != 0) recv_from(peers_[root], root, data, n * sizeof(float));
    for (int r = 1; r < info_.world_size; ++r) send_to(peers_[r], r, data, n * sizeof(float));
  }

  void reduce_scatter_sum(const float* data, size_t n, float* out) override {
    Header h{uint32_t(Op::kReduceScatter), 0, n};
    const ShardRange mine = shard_range(n, info_.world_size, info_.rank);
    if (info_.rank != 0) {
      send_to(root_fd_, 0, &h, sizeof h);
      send_to(root_fd_, 0, data, n * sizeof(float));
      recv_from(root_fd_, 0, out, mine.size() * sizeof(float));
      return;
    }
    std::vector<float> sum(data, data + n);
    sum_at_root(h, sum.data(), n);
    for (int r = 1; r < info_.world_size; ++r) {
      const ShardRange s = shard_range(n, info_.world_size, r);
      send_to(peers_[r], r, sum.data() + s.begin, s.size() * sizeof(float));
    }
    std::copy(sum.begin() + mine.begin, sum.begin() + mine.end, out);
  }

  void all_gather(const float* shard, size_t n, float* out) override {
    Header h{uint32_t(Op::kAllGather), 0, n};
    const ShardRange mine = shard_range(n, info_.world_size, info_.rank);
    if (info_.rank != 0) {
      send_to(root_fd_, 0, &h, sizeof h);
      send_to(root_fd_, 0, shard, mine.size() * sizeof(float));
      recv_from(root_fd_, 0, out, n * sizeof(float));
      return;
    }
    std::copy(shard, shard + mine.size(), out + mine.begin);
    for (int r = 1; r < info_.world_size; ++r) {
      expect_header(r, h);
      const ShardRange s = shard_range(n, info_.world_size, r);
      recv_from(peers_[r], r, out + s.begin, s.size() * sizeof(float));
    }
    for (int r = 1; r < info_.world_size; ++r) send_to(peers_[r], r, out, n * sizeof(float));
  }

  void barrier() override {
    float one = 1;
    all_reduce_sum(&one, 1);
  }

 private:
  // Rank order 0, 1, 2, ...: the same additions in the same order on every run.
  void sum_at_root(const Header& h, float* acc, size_t n) {
    std::vector<float> buf(n);
    for (int r = 1; r < info_.world_size; ++r) {
      expect_header(r, h);
      recv_from(peers_[r], r, buf.data(), n * sizeof(float));
      for (size_t i = 0; i < n; ++i) acc[i] += buf[i];
    }
  }

  void expect_header(int r, const Header& want) {
    Header got{};
    recv_from(peers_[r], r, &got, sizeof got);
    if (got.op != want.op || got.n != want.n || got.root != want.root)
      throw UserError(fmt::format(
          "dist: rank {} called {}(n={}, root={}) while rank 0 called {}(n={}, root={})", r,
          op_name(got.op), got.n, got.root, op_name(want.op), want.n, want.root));
  }

  [[noreturn]] void lost(int peer, const char* what) const {
    throw UserError(
        fmt::format("dist: rank {} lost rank {}: {} (did it die? timeout {} s, MASTER_PORT {})",
                    info_.rank, peer, what, info_.timeout_s, info_.master_port));
  }

  void send_to(int fd, int peer, const void* p, size_t bytes) {
    const char* c = static_cast<const char*>(p);
    while (bytes > 0) {
      const ssize_t k = ::send(fd, c, bytes, MSG_NOSIGNAL);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) lost(peer, errno == EAGAIN ? "send timed out" : std::strerror(errno));
      c += k;
      bytes -= size_t(k);
    }
  }

  void recv_from(int fd, int peer, void* p, size_t bytes) {
    char* c = static_cast<char*>(p);
    while (bytes > 0) {
      const ssize_t k = ::recv(fd, c, bytes, 0);
      if (k < 0 && errno == EINTR) continue;
      if (k == 0) lost(peer, "connection closed");
      if (k < 0) lost(peer, errno == EAGAIN ? "no data before the timeout" : std::strerror(errno));
      c += k;
      bytes -= size_t(k);
    }
  }

  void set_options(int fd) const {
    timeval tv{};
    tv.tv_sec = long(info_.timeout_s);
    tv.tv_usec = long((info_.timeout_s - double(tv.tv_sec)) * 1e6);
    if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1000;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }

  sockaddr_in master_address() const {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(info_.master_port));
    if (::inet_pton(AF_INET, info_.master_addr.c_str(), &a.sin_addr) != 1) {
      addrinfo hints{}, *res = nullptr;
      hints.ai_family = AF_INET;
      if (::getaddrinfo(info_.master_addr.c_str(), nullptr, &hints, &res) != 0 || !res)
        throw UserError(fmt::format("dist: MASTER_ADDR '{}' does not resolve", info_.master_addr));
      a.sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
      ::freeaddrinfo(res);
    }
    return a;
  }

  void accept_peers() {
    peers_.assign(size_t(info_.world_size), -1);
    const int ls = ::socket(AF_INET, SOCK_STREAM, 0);
    KIMI_CHECK(ls >= 0, "dist: socket(): {}", std::strerror(errno));
    int one = 1;
    ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = master_address();
    if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(ls, 128) != 0) {
      const std::string why = std::strerror(errno);
      ::close(ls);
      throw UserError(fmt::format("dist: rank 0 cannot listen on {}:{} (MASTER_PORT): {}",
                                  info_.master_addr, info_.master_port, why));
    }
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(int64_t(info_.timeout_s * 1000));
    for (int joined = 1; joined < info_.world_size;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      pollfd p{ls, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, int(left)) <= 0) {
        ::close(ls);
        throw UserError(
            fmt::format("dist: rank 0 saw {} of {} ranks join on port {} within {} s (WORLD_SIZE)",
                        joined, info_.world_size, info_.master_port, info_.timeout_s));
      }
      const int fd = ::accept(ls, nullptr, nullptr);
      if (fd < 0) continue;
      set_options(fd);
      int32_t r = -1, w = -1;
      try {
        recv_from(fd, -1, &r, sizeof r);
        recv_from(fd, -1, &w, sizeof w);
      } catch (const UserError&) {
        ::close(fd);
        continue;
      }
      if (w != info_.world_size || r <= 0 || r >= info_.world_size || peers_[size_t(r)] >= 0) {
        ::close(fd);
        ::close(ls);
        throw UserError(
            fmt::format("dist: a peer joined as rank {} of {}; rank 0 expects ranks "
                        "1..{} of {} once each (RANK, WORLD_SIZE)",
                        r, w, info_.world_size - 1, info_.world_size));
      }
      peers_[size_t(r)] = fd;
      ++joined;
    }
    ::close(ls);
  }

  void connect_to_root() {
    const sockaddr_in a = master_address();
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(int64_t(info_.timeout_s * 1000));
    for (;;) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      KIMI_CHECK(fd >= 0, "dist: socket(): {}", std::strerror(errno));
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) {
        set_options(fd);
        root_fd_ = fd;
        break;
      }
      ::close(fd);
      if (std::chrono::steady_clock::now() > deadline)
        throw UserError(fmt::format("dist: rank {} could not reach rank 0 at {}:{} within {} s",
                                    info_.rank, info_.master_addr, info_.master_port,
                                    info_.timeout_s));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const int32_t hello[2] = {info_.rank, info_.world_size};
    send_to(root_fd_, 0, hello, sizeof hello);
  }

  RendezvousInfo info_;
  std::vector<int> peers_;  // rank 0 only: socket per peer rank (index 0 unused)
  int root_fd_ = -1;        // the other ranks: socket to rank 0
};

}  // namespace

std::unique_ptr<Communicator> make_tcp_communicator(const RendezvousInfo& info) {
  if (info.world_size == 1) return make_single_communicator();
  return std::make_unique<TcpCommunicator>(info);
}

}  // namespace kimi::dist
