// Whole-file writes that a crash or a reader never sees half done: write a temporary file in
// the same directory, fsync it, rename it over the target, fsync the directory (POSIX rename
// is atomic within one file system).
#pragma once

#include <string>
#include <string_view>

namespace kimi::io {

// Throws kimi::UserError naming the path (and the system's reason) on failure.
void write_file_atomic(const std::string& path, std::string_view contents);

}  // namespace kimi::io
