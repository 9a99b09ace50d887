// The real-text LM path: data prepare on a small generated corpus (byte and BPE), its manifest
// and idempotence, the shard task's packing and determinism, a corrupt shard refused by name,
// and perplexity / bits per byte on a known case.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>

#include "core/tensor/error.h"
#include "tasks/lm_manifest.h"
#include "tasks/lm_prepare.h"
#include "tasks/lm_shards.h"
#include "tasks/tokenizer.h"
#include "trainer/lm_metrics.h"

namespace kimi::tasks {
namespace {

namespace fs = std::filesystem;

// 8 documents of distinct words; returns the corpus directory.
std::string make_corpus(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("kimi_lm_task_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir / "sub");
  for (int d = 0; d < 8; ++d) {
    std::ofstream out(dir / (d % 2 ? "sub" : "") / fmt::format("doc{}.txt", d));
    for (int l = 0; l < 60; ++l) out << "document " << d << " line " << l << " the kernel page\n";
  }
  std::ofstream(dir / "ignored.bin") << "not text";
  return dir.string();
}

PrepareOptions byte_options(const std::string& name) {
  PrepareOptions o;
  o.sources = {make_corpus(name)};
  o.tokenizer = "byte";
  o.out_dir = (fs::temp_directory_path() / ("kimi_lm_data_" + name)).string();
  o.val_fraction = 0.25;
  fs::remove_all(o.out_dir);
  return o;
}

TEST(LmData, PrepareWritesShardsAndManifestAndIsIdempotent) {
  PrepareOptions o = byte_options("byte");
  o.shard_tokens = 3000;  // several train shards
  const PrepareResult r = prepare_lm_data(o);
  EXPECT_FALSE(r.up_to_date);
  const LmManifest m = read_lm_manifest(o.out_dir);
  EXPECT_EQ(m.tokenizer, "byte");
  EXPECT_EQ(m.vocab_size, 257);
  EXPECT_EQ(m.train.documents + m.val.documents, 8) << "ignored.bin is not a text file";
  EXPECT_GT(m.val.documents, 0);
  EXPECT_GT(m.train.shards.size(), 1u);
  // Byte level: one token per byte plus one separator per document.
  EXPECT_EQ(m.train.tokens, m.train.bytes + m.train.documents);
  EXPECT_EQ(m.val.tokens, m.val.bytes + m.val.documents);
  EXPECT_EQ(r.train_tokens, m.train.tokens);
  EXPECT_EQ(m.train.sha256[0], sha256_hex([&] {
              std::ifstream in(fs::path(o.out_dir) / m.train.shards[0], std::ios::binary);
              return std::string(std::istreambuf_iterator<char>(in), {});
            }()));

  const auto stamp = fs::last_write_time(manifest_path(o.out_dir));
  EXPECT_TRUE(prepare_lm_data(o).up_to_date);
  EXPECT_EQ(fs::last_write_time(manifest_path(o.out_dir)), stamp) << "a rerun writes nothing";
  o.val_fraction = 0.5;
  EXPECT_FALSE(prepare_lm_data(o).up_to_date) << "other arguments rebuild";
}

TEST(LmData, BadArgumentsAreOneLine) {
  PrepareOptions o = byte_options("bad");
  o.tokenizer = "wordpiece";
  EXPECT_THROW(prepare_lm_data(o), UserError);
  o = byte_options("bad");
  o.sources = {"/nonexistent/corpus"};
  try {
    prepare_lm_data(o);
    ADD_FAILURE() << "a missing source must be refused";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/corpus"), std::string::npos);
  }
}

TEST(LmData, BpePrepareRoundTripsTheText) {
  PrepareOptions o = byte_options("bpe");
  o.tokenizer = "bpe";
  o.vocab_size = 320;
  if (!sentencepiece_built()) {
    EXPECT_THROW(prepare_lm_data(o), UserError);
    return;
  }
  prepare_lm_data(o);
  const LmManifest m = read_lm_manifest(o.out_dir);
  EXPECT_EQ(m.tokenizer, "bpe");
  EXPECT_LT(m.train.tokens, m.train.bytes / 2) << "BPE compresses the text";
  std::ifstream in(fs::path(o.out_dir) / m.tokenizer_model, std::ios::binary);
  auto tok = load_bpe(std::string(std::istreambuf_iterator<char>(in), {}), "model");
  TokenStream val(o.out_dir, m.val);
  std::vector<int32_t> ids(val.size());
  val.copy(0, val.size(), ids.data());
  EXPECT_EQ(ids[0], m.eos_id);
  EXPECT_EQ(static_cast<int64_t>(tok->decode(ids).size()), m.val.bytes) << "lossless";
}

TEST(LmShardsTask, PacksDocumentsAndSamplesDeterministically) {
  PrepareOptions o = byte_options("task");
  o.shard_tokens = 1000;  // windows cross shard boundaries
  prepare_lm_data(o);
  TaskConfig c;
  c.name = "lm";
  c.lm.data = o.out_dir;
  auto task = make_task(c);
  EXPECT_EQ(task->vocab_size(), 257);
  const Batch a = task->sample(16, 200, 42), b = task->sample(16, 200, 42);
  EXPECT_EQ(a.inputs, b.inputs) << "the same seed, the same rows (resume reads the same data)";
  EXPECT_NE(a.inputs, task->sample(16, 200, 43).inputs);
  int separators = 0;
  for (int64_t r = 0; r < 16; ++r)
    for (int64_t t = 0; t + 1 < 200; ++t) {
      EXPECT_EQ(a.labels[r * 200 + t], a.inputs[r * 200 + t + 1]) << "labels are the next token";
      separators += a.inputs[r * 200 + t] == 256;
    }
  EXPECT_GT(separators, 0) << "documents are packed with the end-of-text token between them";
  task->check_seq_len(500);
  EXPECT_THROW(task->check_seq_len(1'000'000), UserError);

  c.vocab_size = 256;
  EXPECT_THROW(make_task(c), UserError) << "a vocab that disagrees with the manifest";
  c.vocab_size = 0;
  const LmManifest m = read_lm_manifest(o.out_dir);
  const fs::path shard = fs::path(o.out_dir) / m.train.shards[1];
  fs::resize_file(shard, fs::file_size(shard) - 2);
  try {
    make_task(c);
    ADD_FAILURE() << "a truncated shard must be refused";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find(shard.string()), std::string::npos) << e.what();
  }
}

TEST(LmMetrics, PerplexityAndBitsPerByteOnAKnownCase) {
  // Uniform over 256 symbols: loss ln 256, perplexity 256, 8 bits per token; at 1 byte per token
  // that is 8 bits per byte, at 4 bytes per token 2.
  const double loss = std::log(256.0);
  EXPECT_NEAR(perplexity(loss), 256.0, 1e-9);
  EXPECT_NEAR(bits_per_byte(loss, 1.0), 8.0, 1e-12);
  EXPECT_NEAR(bits_per_byte(loss, 4.0), 2.0, 1e-12);
  EXPECT_EQ(bits_per_byte(loss, 0.0), 0.0);
  TaskConfig c;
  c.name = "lm";
  c.lm.path = "x.txt";
  EXPECT_EQ(eval_bytes_per_token(c), 1.0);
  c.name = "mqar";
  EXPECT_EQ(eval_bytes_per_token(c), 0.0);
}

TEST(LmMetrics, FlopsFollowSixNPlusAttention) {
  ModelConfig m;
  m.d_model = 16;
  m.n_layers = 2;
  m.mixer = {"kda", "attention"};
  m.num_heads = 2;
  m.head_dim = 8;
  m.tie_embeddings = false;
  const double f = training_flops_per_token(m, 10000, 100, 64);
  EXPECT_DOUBLE_EQ(f, 6.0 * (10000 - 100 * 16) + 6.0 * 64 * 2 * 8 + 12.0 * 2 * 8 * 8);
  EXPECT_GT(training_flops_per_token(m, 10000, 100, 128), f) << "attention grows with length";
}

}  // namespace
}  // namespace kimi::tasks
