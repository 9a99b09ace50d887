// `kimi-lab data prepare`: a text corpus -> tokenizer + llm.c token shards + manifest.json.
// Each file is one document; a document goes to the validation split when a hash of its path
// (relative to its source) falls below val_fraction, so the split does not depend on the order
// files are found in nor on the other files. Documents are packed into one token stream per
// split, each preceded by the tokenizer's end-of-text id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kimi::tasks {

struct PrepareOptions {
  std::vector<std::string> sources;  // directories (searched for text files) or files
  std::string tokenizer = "bpe";     // bpe | byte
  int64_t vocab_size = 8192;         // bpe only (byte is always 257)
  std::string out_dir = "data/lm_linux_doc";
  double val_fraction = 0.05;
  int64_t shard_tokens = 100'000'000;  // llm.c's shard size
  int threads = 2;                     // SentencePiece training threads
};

struct PrepareResult {
  std::string manifest;
  bool up_to_date = false;  // an earlier prepare with the same arguments and sources was kept
  int64_t train_tokens = 0, val_tokens = 0;
};

// The kernel documentation that Debian's linux-doc ships (reStructuredText sources under
// /usr/share/doc/linux-doc-*/html/_sources), or "" when it is not installed.
std::string default_corpus();

// Text files a directory source contributes: .txt, .rst, .md, .text, sorted by path.
std::vector<std::string> list_text_files(const std::string& dir);

// A no-op when out_dir holds a manifest made from the same arguments and source files (paths
// and sizes) whose shards are intact (sha256). Otherwise rebuilds: shards and the tokenizer
// model are each written atomically and the manifest last, so a killed prepare leaves no
// manifest that points at missing or half-written files.
PrepareResult prepare_lm_data(const PrepareOptions& options);

std::string sha256_hex(std::string_view bytes);

}  // namespace kimi::tasks
