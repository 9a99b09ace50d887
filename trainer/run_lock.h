// Who may write into a run or a sweep directory. A run holds its directory's exclusive lock for
// its whole life; a sweep holds its directory's shared lock, so two sweep processes with
// disjoint --only may share it while each point (a run) is still one writer. The holder's pid
// goes to `.lock.pid` beside the lock so a refusal can name it.
#pragma once

#include <string>

#include "core/tensor/error.h"
#include "trainer/dir_lock.h"

namespace kimi {

// The directory is taken: another process holds its lock, the run there is finished, or (for a
// new run) it already holds a run. Nothing was written. A sweep skips such a point instead of
// marking it failed.
class RunDirUnavailable : public UserError {
 public:
  using UserError::UserError;
};

// Creates `dir` if needed and locks it exclusively. RunDirUnavailable "run directory DIR is in
// use by another process (pid N)" when another process holds it.
DirLock lock_run_dir(const std::string& dir);

// The same with a shared lock, for a sweep directory.
DirLock lock_sweep_dir(const std::string& dir);

}  // namespace kimi
