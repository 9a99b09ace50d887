// Children start with posix_spawn (no code runs between fork and exec in this multi-threaded
// process), as the sweep's workers do; they share our stdout and stderr.
#include "tools/cli/run_ranks.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "core/tensor/error.h"

extern char** environ;

namespace kimi::cli {

namespace {

// A port no one listens on now (the kernel's pick); rank 0 binds it a moment later.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw UserError(fmt::format("run --ranks: no socket: {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw UserError(fmt::format("run --ranks: no free port: {}", std::strerror(errno)));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool is_rendezvous_var(const std::string& kv) {
  for (const char* name : {"RANK=", "LOCAL_RANK=", "WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT=",
                           "KIMI_DIST_BACKEND="})
    if (kv.rfind(name, 0) == 0) return true;
  return false;
}

std::vector<char*> c_strings(std::vector<std::string>& items) {
  std::vector<char*> out;
  for (auto& s : items) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

void run_ranks(const std::vector<std::string>& argv, int ranks, const std::string& backend) {
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < ranks; ++r) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e)
      if (!is_rendezvous_var(*e)) env.push_back(*e);
    env.push_back(fmt::format("RANK={}", r));
    env.push_back(fmt::format("LOCAL_RANK={}", r));
    env.push_back(fmt::format("WORLD_SIZE={}", ranks));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back(fmt::format("MASTER_PORT={}", port));
    if (!backend.empty()) env.push_back("KIMI_DIST_BACKEND=" + backend);
    std::vector<std::string> args = argv;
    auto args_c = c_strings(args);
    auto env_c = c_strings(env);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, args_c[0], nullptr, nullptr, args_c.data(), env_c.data());
    if (rc != 0) {
      // The ranks started so far fail at the rendezvous's timeout; wait for them.
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      throw UserError(fmt::format("run --ranks: cannot start rank {} ('{}'): {}", r, argv[0],
                                  std::strerror(rc)));
    }
    pids.push_back(pid);
  }
  std::vector<std::string> failed;
  for (int r = 0; r < ranks; ++r) {
    int status = 0;
    if (::waitpid(pids[r], &status, 0) < 0) {
      failed.push_back(fmt::format("rank {} (lost: {})", r, std::strerror(errno)));
    } else if (WIFSIGNALED(status)) {
      failed.push_back(fmt::format("rank {} (signal {})", r, WTERMSIG(status)));
    } else if (WEXITSTATUS(status) != 0) {
      failed.push_back(fmt::format("rank {} (exit {})", r, WEXITSTATUS(status)));
    }
  }
  if (!failed.empty())
    throw UserError(fmt::format("run --ranks {}: {} failed; see the ranks' messages above", ranks,
                                fmt::join(failed, ", ")));
}

}  // namespace kimi::cli
