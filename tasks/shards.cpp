// llm.c token shards (tasks/shards.h): writing through the atomic writer, reading through mmap.
#include "tasks/shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"

namespace kimi::tasks {
namespace {

int64_t token_bytes(int version) { return version == 1 ? 2 : 4; }

int32_t read_i32(const unsigned char* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);  // the format is little-endian, as is every host we build for
  return v;
}

}  // namespace

int shard_version_for_vocab(int64_t vocab_size) { return vocab_size <= 65536 ? 1 : 2; }

std::string encode_shard(const std::vector<uint32_t>& tokens, int version) {
  KIMI_CHECK(version == 1 || version == 2, "shard version {} (1 or 2)", version);
  if (tokens.size() > static_cast<size_t>(INT32_MAX))
    throw UserError(
        fmt::format("a shard holds at most {} tokens; got {}", INT32_MAX, tokens.size()));
  const int64_t width = token_bytes(version);
  std::string out(static_cast<size_t>(kShardHeaderInts * 4 + width * tokens.size()), '\0');
  const int32_t header[3] = {kShardMagic, version, static_cast<int32_t>(tokens.size())};
  std::memcpy(out.data(), header, sizeof header);
  char* body = out.data() + kShardHeaderInts * 4;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (version == 1) {
      if (tokens[i] > 0xFFFF)
        throw UserError(fmt::format("token {} does not fit a uint16 shard (version 1)", tokens[i]));
      const uint16_t t = static_cast<uint16_t>(tokens[i]);
      std::memcpy(body + 2 * i, &t, 2);
    } else {
      std::memcpy(body + 4 * i, &tokens[i], 4);
    }
  }
  return out;
}

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int version) {
  io::write_file_atomic(path, encode_shard(tokens, version));
}

Shard::Shard(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw UserError(fmt::format("{}: cannot open token shard: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < kShardHeaderInts * 4) {
    ::close(fd);
    throw UserError(fmt::format("{}: not a token shard: {} bytes, shorter than the {}-byte header",
                                path, static_cast<int64_t>(st.st_size), kShardHeaderInts * 4));
  }
  map_bytes_ = static_cast<size_t>(st.st_size);
  void* m = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file
  if (m == MAP_FAILED)
    throw UserError(fmt::format("{}: cannot map token shard: {}", path, std::strerror(errno)));
  map_ = static_cast<const unsigned char*>(m);
  const int32_t magic = read_i32(map_), version = read_i32(map_ + 4), count = read_i32(map_ + 8);
  std::string problem;
  if (magic != kShardMagic) {
    problem = fmt::format("magic {} (expected {})", magic, kShardMagic);
  } else if (version != 1 && version != 2) {
    problem = fmt::format("version {} (expected 1 or 2)", version);
  } else if (count < 0 || static_cast<int64_t>(map_bytes_) !=
                              kShardHeaderInts * 4 + token_bytes(version) * int64_t{count}) {
    problem = fmt::format("{} bytes for {} tokens of {} bytes (expected {}): truncated or corrupt",
                          map_bytes_, count, token_bytes(version),
                          kShardHeaderInts * 4 + token_bytes(version) * int64_t{count});
  }
  if (!problem.empty()) {
    ::munmap(const_cast<unsigned char*>(map_), map_bytes_);
    map_ = nullptr;
    throw UserError(fmt::format("{}: not a valid token shard: {}", path, problem));
  }
  version_ = version;
  num_tokens_ = count;
}

Shard::~Shard() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), map_bytes_);
}

Shard::Shard(Shard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(other.map_),
      map_bytes_(other.map_bytes_),
      version_(other.version_),
      num_tokens_(other.num_tokens_) {
  other.map_ = nullptr;
}

uint32_t Shard::operator[](int64_t i) const {
  KIMI_CHECK(i >= 0 && i < num_tokens_, "token {} outside shard {} of {}", i, path_, num_tokens_);
  const unsigned char* p = map_ + kShardHeaderInts * 4 + i * token_bytes(version_);
  if (version_ == 1) {
    uint16_t t;
    std::memcpy(&t, p, 2);
    return t;
  }
  uint32_t t;
  std::memcpy(&t, p, 4);
  return t;
}

void Shard::copy(int64_t begin, int64_t n, int32_t* out) const {
  KIMI_CHECK(begin >= 0 && n >= 0 && begin + n <= num_tokens_, "tokens [{}, {}) outside {} of {}",
             begin, begin + n, path_, num_tokens_);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>((*this)[begin + i]);
}

}  // namespace kimi::tasks
