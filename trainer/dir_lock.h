// Advisory locks on run and sweep directories (flock(2) on a `.lock` file inside), so two
// processes never train into one directory. The kernel drops a lock when its holder dies, so a
// killed run never leaves a directory locked: no stale-lock cleanup is needed.
#pragma once

#include <string>

namespace kimi {

class DirLock {
 public:
  enum class Mode {
    kExclusive,  // one run directory, one sweep point: a single writer
    kShared,     // a sweep directory: several sweep processes with disjoint --only may share it
  };

  // Takes the lock on `dir`/.lock without waiting. Throws UserError naming the directory when
  // another process holds a conflicting lock (`what` says what the directory is, e.g. "run").
  DirLock(const std::string& dir, Mode mode, const std::string& what);
  DirLock() = default;  // holds nothing; try_lock() fills it
  ~DirLock();
  DirLock(DirLock&& other) noexcept;
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

  // Tries the lock; false when another process holds a conflicting one (no exception).
  static bool try_lock(const std::string& dir, Mode mode, DirLock* out);

 private:
  int fd_ = -1;
};

}  // namespace kimi
