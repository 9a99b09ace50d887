// write_file_atomic (core/io/atomic_file.h): temp file + fsync + rename + directory fsync.
#include "core/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
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
    write_all(fd, contents.substr(0, contents.size() / 2), path);
    kill_point_in_write(path);
    write_all(fd, contents.substr(contents.size() / 2), path);
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

void kill_point_in_write(const std::string& target) {
  static const char* const wanted = std::getenv("KIMI_KILL_IN_WRITE");
  if (wanted == nullptr || *wanted == '\0') return;
  if (std::filesystem::path(target).filename().string().find(wanted) == std::string::npos) return;
  ::kill(::getpid(), SIGKILL);
}

bool is_atomic_temp_name(std::string_view name) {
  const size_t tmp = name.rfind(".tmp.");
  // A leading dot, a target name of at least one character, then ".tmp." and a suffix.
  if (name.size() < 2 || name[0] != '.' || tmp == std::string_view::npos || tmp < 2) return false;
  const std::string_view suffix = name.substr(tmp + 5);
  const auto all_of = [](std::string_view s, auto pred) {
    if (s.empty()) return false;
    for (char c : s)
      if (!pred(static_cast<unsigned char>(c))) return false;
    return true;
  };
  const auto digit = [](unsigned char c) { return std::isdigit(c) != 0; };
  const auto alnum = [](unsigned char c) { return std::isalnum(c) != 0; };
  // write_file_atomic: PID.COUNTER
  const size_t dot = suffix.find('.');
  if (dot != std::string_view::npos)
    return all_of(suffix.substr(0, dot), digit) && all_of(suffix.substr(dot + 1), digit);
  // write_safetensors: mkostemp's six characters
  return suffix.size() == 6 && all_of(suffix, alnum);
}

std::vector<std::string> remove_atomic_temp_files(const std::string& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!is_atomic_temp_name(name) || !entry.is_regular_file(ec)) continue;
    if (std::filesystem::remove(entry.path(), ec)) removed.push_back(name);
  }
  return removed;
}

}  // namespace kimi::io
