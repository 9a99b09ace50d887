// manifest.json of a prepared LM data directory (written by `kimi-lab data prepare`,
// tasks/lm_prepare.h): what the shards hold and how they were made. Read strictly: a missing or
// mistyped key is one UserError naming the file and the key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kimi::tasks {

inline constexpr const char* kManifestFormat = "kimi-lab lm shards v1";

struct SplitInfo {
  int64_t documents = 0, bytes = 0, tokens = 0;  // bytes of document text (separators: none)
  std::vector<std::string> shards;               // file names relative to the data directory
  std::vector<std::string> sha256;               // one per shard
  // Text bytes per token of this split: bits per byte = loss / ln 2 / bytes_per_token.
  double bytes_per_token() const { return tokens ? static_cast<double>(bytes) / tokens : 0.0; }
};

struct LmManifest {
  std::string dir;              // the data directory (not stored: where it was read from)
  std::string tokenizer;        // byte | bpe
  std::string tokenizer_model;  // bpe: file name of the SentencePiece model; byte: ""
  int64_t vocab_size = 0;
  int32_t eos_id = 0;
  int shard_version = 1;
  SplitInfo train, val;
};

std::string manifest_path(const std::string& dir);

// Reads dir/manifest.json; UserError naming the file when absent, unparsable or incomplete.
LmManifest read_lm_manifest(const std::string& dir);

}  // namespace kimi::tasks
