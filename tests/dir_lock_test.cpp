// Directory locks: flock is per open file description, so two locks taken in one process
// conflict exactly as two processes would.
#include "trainer/dir_lock.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/tensor/error.h"

namespace kimi {
namespace {

std::string fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("kimi_dir_lock_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

TEST(DirLock, SecondExclusiveLockIsRefusedWithTheDirectoryNamed) {
  const std::string dir = fresh_dir("exclusive");
  DirLock first(dir, DirLock::Mode::kExclusive, "run");
  try {
    DirLock second(dir, DirLock::Mode::kExclusive, "run");
    FAIL() << "a second exclusive lock was granted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
}

TEST(DirLock, SharedLocksCoexistButExcludeAnExclusiveOne) {
  const std::string dir = fresh_dir("shared");
  DirLock a(dir, DirLock::Mode::kShared, "sweep");
  DirLock b(dir, DirLock::Mode::kShared, "sweep");
  DirLock c = std::move(b);
  DirLock probe(dir, DirLock::Mode::kShared, "sweep");
  EXPECT_FALSE(DirLock::try_lock(dir, DirLock::Mode::kExclusive, &probe));
}

TEST(DirLock, ReleasedWhenTheHolderGoesAway) {
  const std::string dir = fresh_dir("release");
  DirLock held;
  ASSERT_TRUE(DirLock::try_lock(dir, DirLock::Mode::kExclusive, &held));
  DirLock blocked;
  EXPECT_FALSE(DirLock::try_lock(dir, DirLock::Mode::kShared, &blocked));
  held = DirLock();  // moving an empty lock over it closes the descriptor
  EXPECT_TRUE(DirLock::try_lock(dir, DirLock::Mode::kExclusive, &blocked));
}

}  // namespace
}  // namespace kimi
