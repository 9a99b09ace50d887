// Token shards in llm.c's format (karpathy/llm.c dev/data/data_common.py write_datafile): a
// header of 256 int32 -- [0] magic 20240520, [1] version (1: uint16 tokens, 2: uint32 tokens),
// [2] token count -- then the tokens, little-endian. Read back memory-mapped, never copied whole.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kimi::tasks {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int64_t kShardHeaderInts = 256;

// 1 (uint16) when every id fits in 16 bits, else 2 (uint32).
int shard_version_for_vocab(int64_t vocab_size);

// The whole file (header + tokens) as bytes; UserError when a token does not fit the version.
std::string encode_shard(const std::vector<uint32_t>& tokens, int version);

// Written atomically (core/io/atomic_file.h): a reader never sees half a shard.
void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int version);

// A read-only memory map of one shard. Every malformed file (short header, wrong magic or
// version, a size that disagrees with the token count) is one UserError naming the file.
class Shard {
 public:
  explicit Shard(const std::string& path);
  ~Shard();
  Shard(Shard&& other) noexcept;
  Shard& operator=(Shard&&) = delete;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  const std::string& path() const { return path_; }
  int version() const { return version_; }
  int64_t size() const { return num_tokens_; }
  uint32_t operator[](int64_t i) const;
  // Tokens [begin, begin + n) as int32 (ids < 2^31 by construction of the vocab check).
  void copy(int64_t begin, int64_t n, int32_t* out) const;

 private:
  std::string path_;
  const unsigned char* map_ = nullptr;
  size_t map_bytes_ = 0;
  int version_ = 0;
  int64_t num_tokens_ = 0;
};

}  // namespace kimi::tasks
