// Ranks as threads of one test process, each with its own TCP communicator (and so its own
// sockets, as separate processes would have).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/dist/communicator.h"

namespace kimi::dist {

// A port the kernel just handed out; tests need one each so that they never share rank 0.
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Runs body(rank, comm) on world ranks; returns each rank's error message ("" when none).
inline std::vector<std::string> run_ranks(int world, double timeout_s,
                                          const std::function<void(int, Communicator&)>& body) {
  const int port = free_port();
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        RendezvousInfo info{r, world, "127.0.0.1", port, timeout_s};
        auto comm = make_tcp_communicator(info);
        body(r, *comm);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace kimi::dist
