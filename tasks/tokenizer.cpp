// Byte-level and SentencePiece BPE tokenizers (tasks/tokenizer.h). Without SentencePiece the BPE
// entry points refuse with one line instead of silently falling back to bytes.
#include "tasks/tokenizer.h"

#include "core/tensor/error.h"

#ifdef KIMI_LAB_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <unordered_map>
#endif

namespace kimi::tasks {
namespace {

class ByteTokenizer : public Tokenizer {
 public:
  std::string kind() const override { return "byte"; }
  int64_t vocab_size() const override { return 257; }
  int32_t eos_id() const override { return 256; }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids)
      if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));  // the separator has no bytes
    return out;
  }
};

#ifdef KIMI_LAB_SENTENCEPIECE
// Feeds the texts' lines to the trainer without a temporary file.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& texts) : texts_(texts) { advance(); }
  bool done() const override { return doc_ >= texts_.size(); }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  // Skips empty lines: they carry nothing to learn from.
  void advance() {
    while (doc_ < texts_.size()) {
      const std::string& t = texts_[doc_];
      if (pos_ >= t.size()) {
        ++doc_;
        pos_ = 0;
        continue;
      }
      size_t end = t.find('\n', pos_);
      if (end == std::string::npos) end = t.size();
      line_.assign(t, pos_, end - pos_);
      pos_ = end + 1;
      if (!line_.empty()) return;
    }
  }
  const std::vector<std::string>& texts_;
  size_t doc_ = 0, pos_ = 0;
  std::string line_;
};

class BpeTokenizer : public Tokenizer {
 public:
  BpeTokenizer(const std::string& serialized, const std::string& origin) {
    const auto status = sp_.LoadFromSerializedProto(serialized);
    if (!status.ok())
      throw UserError(fmt::format("{}: not a SentencePiece model: {}", origin, status.ToString()));
    if (sp_.eos_id() < 0)
      throw UserError(fmt::format("{}: the SentencePiece model has no end-of-text id", origin));
  }
  std::string kind() const override { return "bpe"; }
  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  int32_t eos_id() const override { return sp_.eos_id(); }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    KIMI_CHECK(status.ok(), "SentencePiece encode: {}", status.ToString());
    return {ids.begin(), ids.end()};
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    const auto status = sp_.Decode(std::vector<int>(ids.begin(), ids.end()), &out);
    KIMI_CHECK(status.ok(), "SentencePiece decode: {}", status.ToString());
    return out;
  }

 private:
  sentencepiece::SentencePieceProcessor sp_;
};
#endif

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

#ifdef KIMI_LAB_SENTENCEPIECE
bool sentencepiece_built() { return true; }

std::string train_bpe(const std::vector<std::string>& texts, int64_t vocab_size, int threads) {
  // Identity normalisation and kept whitespace make decode(encode(x)) == x; byte fallback
  // leaves no unknown token; a fixed seed and no sampling make the model a function of the text.
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"hard_vocab_limit", "false"},
      {"byte_fallback", "true"},
      {"character_coverage", "0.9995"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      // No dummy leading space per encode: documents packed into one stream decode back to
      // exactly their bytes (with it, every document but the first would gain a space).
      {"add_dummy_prefix", "false"},
      {"split_digits", "true"},
      {"unk_id", "0"},
      {"bos_id", "-1"},
      {"eos_id", "1"},
      {"pad_id", "-1"},
      {"input_sentence_size", "2000000"},
      {"shuffle_input_sentence", "false"},
      {"num_threads", std::to_string(std::max(1, threads))},
      {"minloglevel", "2"},
      {"model_prefix", ""},
  };
  sentencepiece::SetRandomGeneratorSeed(1);
  LineIterator lines(texts);
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &model);
  if (!status.ok())
    throw UserError(fmt::format("BPE training (SentencePiece) failed: {}", status.ToString()));
  return model;
}

std::unique_ptr<Tokenizer> load_bpe(const std::string& serialized, const std::string& origin) {
  return std::make_unique<BpeTokenizer>(serialized, origin);
}
#else
[[noreturn]] void refuse_bpe() {
  throw UserError(
      "tokenizer bpe: this kimi-lab was built without SentencePiece (install "
      "libsentencepiece-dev and rebuild with -DKIMI_LAB_SENTENCEPIECE=ON); use --tokenizer byte");
}

bool sentencepiece_built() { return false; }
std::string train_bpe(const std::vector<std::string>&, int64_t, int) { refuse_bpe(); }
std::unique_ptr<Tokenizer> load_bpe(const std::string&, const std::string&) { refuse_bpe(); }
#endif

}  // namespace kimi::tasks
