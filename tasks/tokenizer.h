// Tokenizers for the LM data path: byte-level (ids 0-255 are the bytes, 256 the end-of-text
// separator) and BPE trained with SentencePiece (Kudo & Richardson 2018) with byte fallback, so
// every input encodes without an unknown token and decodes back to the same bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kimi::tasks {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string kind() const = 0;  // "byte" | "bpe"
  virtual int64_t vocab_size() const = 0;
  // Put before every document when documents are packed into one stream (GPT-2's
  // <|endoftext|>), so the model sees where one ends and the next begins.
  virtual int32_t eos_id() const = 0;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();

// True when this kimi-lab was built with SentencePiece (CMake option KIMI_LAB_SENTENCEPIECE).
bool sentencepiece_built();

// Trains a BPE model on the texts (each line one training sentence) and returns the serialized
// model. vocab_size is an upper bound (a small text may yield fewer pieces). UserError when built
// without SentencePiece or when training fails.
std::string train_bpe(const std::vector<std::string>& texts, int64_t vocab_size, int threads);

// Loads a serialized model as train_bpe returns it; `origin` names it in errors.
std::unique_ptr<Tokenizer> load_bpe(const std::string& serialized, const std::string& origin);

}  // namespace kimi::tasks
