// Whole-file writes that a crash or a reader never sees half done: write a temporary file in
// the same directory, fsync it, rename it over the target, fsync the directory (POSIX rename
// is atomic within one file system).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kimi::io {

// Throws kimi::UserError naming the path (and the system's reason) on failure.
void write_file_atomic(const std::string& path, std::string_view contents);

// True for the names of the temporary files that the atomic writers make: ".NAME.tmp.PID.N"
// (write_file_atomic) and ".NAME.tmp.XXXXXX" (write_safetensors, mkostemp). A process killed
// mid-write leaves one behind.
bool is_atomic_temp_name(std::string_view filename);

// Deletes the regular files in `dir` (not below) whose names is_atomic_temp_name accepts and
// returns their names. Only call it while no other process writes into `dir` (a run holds its
// directory's lock): a live writer's temp file would go too. Missing dir: nothing, no error.
std::vector<std::string> remove_atomic_temp_files(const std::string& dir);

// Test hook for the writers above: when the environment variable KIMI_KILL_IN_WRITE is set and
// the target's file name contains its value, the process kills itself (SIGKILL) here, halfway
// through writing the temp file, as a power cut or `kill -9` would. Unset: does nothing.
void kill_point_in_write(const std::string& target);

}  // namespace kimi::io
