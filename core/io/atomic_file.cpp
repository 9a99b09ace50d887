// write_file_atomic (core/io/atomic_file.h): temp file + fsync + rename + directory fsync.
#include "core/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/tensor/error.h"

namespace kimi::io {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw UserError(fmt::format("cannot {} '{}': {}", what, path, std::strerror(err)));
}

void write_all(int fd, std::string_view contents, const std::string& path) {
  while (!contents.empty()) {
    const ssize_t n = ::write(fd, contents.data(), contents.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write", path, errno);
    contents.remove_prefix(static_cast<size_t>(n));
  }
}

// Makes the rename itself durable; some file systems refuse fsync on directories, which is fine.
void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomic(const std::string& path, std::string_view contents) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path target(path);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  // Unique per process and call, so two writers of one path never share a temp file.
  const std::string tmp =
      fmt::format("{}/.{}.tmp.{}.{}", dir, target.filename().string(), ::getpid(), counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("write", path, errno);
  try {
    write_all(fd, contents, path);
    if (::fsync(fd) != 0) fail("sync", path, errno);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("write", path, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("replace", path, err);
  }
  sync_directory(dir);
}

}  // namespace kimi::io
