// llm.c token shards: round trip in both versions, the header as llm.c writes it, and every
// malformed file refused with one line naming it.
#include "tasks/shards.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/tensor/error.h"

namespace kimi::tasks {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("kimi_shards_test_" + name)).string();
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string error_of(const std::string& path) {
  try {
    Shard s(path);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(Shards, RoundTripBothVersions) {
  for (int version : {1, 2}) {
    const std::vector<uint32_t> tokens = {0, 1, 65535, 256, 7, version == 2 ? 100000u : 3u};
    const std::string path = temp_path(fmt::format("v{}.bin", version));
    write_shard(path, tokens, version);
    EXPECT_EQ(fs::file_size(path), 1024 + tokens.size() * (version == 1 ? 2 : 4));
    Shard s(path);
    EXPECT_EQ(s.version(), version);
    ASSERT_EQ(s.size(), static_cast<int64_t>(tokens.size()));
    for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(s[i], tokens[i]);
    std::vector<int32_t> part(3);
    s.copy(2, 3, part.data());
    EXPECT_EQ(part, (std::vector<int32_t>{65535, 256, 7}));
  }
}

TEST(Shards, HeaderIsLlmcs) {
  const std::string bytes = encode_shard({5, 6, 7}, 1);
  int32_t header[256];
  std::memcpy(header, bytes.data(), sizeof header);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], 3);
  for (int i = 3; i < 256; ++i) EXPECT_EQ(header[i], 0);
  EXPECT_EQ(shard_version_for_vocab(65536), 1);
  EXPECT_EQ(shard_version_for_vocab(65537), 2);
  EXPECT_THROW(encode_shard({70000}, 1), UserError) << "a uint16 shard cannot hold 70000";
}

TEST(Shards, CorruptShardIsOneLineNamingTheFile) {
  const std::string good = encode_shard({1, 2, 3, 4}, 1);
  const std::string path = temp_path("bad.bin");
  std::string bad_magic = good;
  bad_magic[0] = 'x';
  std::string bad_version = good;
  bad_version[4] = 9;
  for (const std::string& bytes : {good.substr(0, 100), good.substr(0, good.size() - 1), bad_magic,
                                   bad_version, good + "extra"}) {
    write_raw(path, bytes);
    const std::string msg = error_of(path);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_NE(error_of(temp_path("absent.bin")).find("absent.bin"), std::string::npos);
  write_raw(path, good);
  EXPECT_EQ(error_of(path), "");
}

}  // namespace
}  // namespace kimi::tasks
