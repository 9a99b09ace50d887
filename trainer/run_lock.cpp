// Run and sweep directory locks with the holder's pid (trainer/run_lock.h).
#include "trainer/run_lock.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/io/atomic_file.h"

namespace kimi {

namespace fs = std::filesystem;

namespace {

std::string pid_path(const std::string& dir) { return (fs::path(dir) / ".lock.pid").string(); }

// The pid the holder wrote, or "unknown" (it may not have written it yet).
std::string holder_pid(const std::string& dir) {
  std::ifstream in(pid_path(dir));
  long long pid = 0;
  if (in >> pid && pid > 0) return std::to_string(pid);
  return "unknown";
}

DirLock lock_dir(const std::string& dir, DirLock::Mode mode, const char* what) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw UserError(fmt::format("cannot create {} directory '{}': {}", what, dir, ec.message()));
  DirLock lock;
  if (!DirLock::try_lock(dir, mode, &lock))
    throw RunDirUnavailable(fmt::format("{} directory {} is in use by another process (pid {})",
                                        what, dir, holder_pid(dir)));
  io::write_file_atomic(pid_path(dir), std::to_string(::getpid()) + "\n");
  return lock;
}

}  // namespace

DirLock lock_run_dir(const std::string& dir) {
  return lock_dir(dir, DirLock::Mode::kExclusive, "run");
}

DirLock lock_sweep_dir(const std::string& dir) {
  return lock_dir(dir, DirLock::Mode::kShared, "sweep");
}

}  // namespace kimi
