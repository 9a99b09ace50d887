// flock-based directory locks (trainer/dir_lock.h).
#include "trainer/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/tensor/error.h"

namespace kimi {
namespace {

int open_lock_file(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / ".lock").string();
  // O_CLOEXEC: a child process (a sweep's point runner) must not inherit the parent's lock.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw UserError(fmt::format("cannot open lock file '{}': {}", path, std::strerror(errno)));
  }
  return fd;
}

bool lock_fd(int fd, DirLock::Mode mode) {
  const int op = (mode == DirLock::Mode::kExclusive ? LOCK_EX : LOCK_SH) | LOCK_NB;
  while (::flock(fd, op) != 0) {
    if (errno == EINTR) continue;
    return false;
  }
  return true;
}

}  // namespace

bool DirLock::try_lock(const std::string& dir, Mode mode, DirLock* out) {
  const int fd = open_lock_file(dir);
  if (!lock_fd(fd, mode)) {
    ::close(fd);
    return false;
  }
  DirLock lock;
  lock.fd_ = fd;
  *out = std::move(lock);
  return true;
}

DirLock::DirLock(const std::string& dir, Mode mode, const std::string& what) {
  fd_ = open_lock_file(dir);
  if (!lock_fd(fd_, mode)) {
    ::close(fd_);
    fd_ = -1;
    throw UserError(
        fmt::format("{}: this {} directory is in use by another kimi-lab process", dir, what));
  }
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

DirLock::DirLock(DirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

}  // namespace kimi
