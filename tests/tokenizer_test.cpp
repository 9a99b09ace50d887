// Tokenizers: byte-level round trip, and a BPE trained by SentencePiece on a small generated
// text that compresses it and decodes back to the same bytes (refused when built without it).
#include "tasks/tokenizer.h"

#include <gtest/gtest.h>

#include "core/tensor/error.h"

namespace kimi::tasks {
namespace {

std::string generated_text(int lines) {
  const char* words[] = {"kernel", "driver", "memory", "page", "lock", "thread", "device", "the"};
  std::string text;
  uint64_t x = 12345;
  for (int l = 0; l < lines; ++l) {
    for (int w = 0; w < 10; ++w) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      text += std::string(words[(x >> 33) % 8]) + (w == 9 ? "\n" : " ");
    }
  }
  return text;
}

TEST(Tokenizer, ByteRoundTrip) {
  auto tok = make_byte_tokenizer();
  EXPECT_EQ(tok->vocab_size(), 257);
  EXPECT_EQ(tok->eos_id(), 256);
  const std::string text = std::string("h\xc3\xa9llo\n\0\xff", 9);
  const auto ids = tok->encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[1], 0xc3);
  EXPECT_EQ(ids.back(), 255);
  auto with_eos = ids;
  with_eos.insert(with_eos.begin(), tok->eos_id());
  EXPECT_EQ(tok->decode(with_eos), text) << "the separator decodes to no bytes";
}

TEST(Tokenizer, BpeTrainsOnASmallTextAndRoundTrips) {
  const std::string text = generated_text(400);
  if (!sentencepiece_built()) {
    EXPECT_THROW(train_bpe({text}, 300, 1), UserError);
    return;
  }
  const std::string model = train_bpe({text}, 300, 1);
  EXPECT_EQ(model, train_bpe({text}, 300, 1)) << "training is deterministic";
  auto tok = load_bpe(model, "test");
  EXPECT_LE(tok->vocab_size(), 300);
  EXPECT_GT(tok->vocab_size(), 258);
  const std::string sample = "the kernel  driver\n\tlocks 42 \xc3\xa9 pages\n";
  const auto ids = tok->encode(sample);
  EXPECT_EQ(tok->decode(ids), sample) << "identity normalisation + byte fallback: exact";
  const auto trained = tok->encode(text.substr(0, 2000));
  EXPECT_LT(trained.size(), 2000u / 2) << "BPE merges words seen in training (bytes: 2000)";
  EXPECT_THROW(load_bpe("not a model", "bogus.model"), UserError);
}

}  // namespace
}  // namespace kimi::tasks
