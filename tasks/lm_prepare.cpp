// The data preparation behind `kimi-lab data prepare` (tasks/lm_prepare.h).
#include "tasks/lm_prepare.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "tasks/lm_manifest.h"
#include "tasks/rng.h"
#include "tasks/shards.h"
#include "tasks/tokenizer.h"

namespace kimi::tasks {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Document {
  std::string key;   // path relative to its source (the split hash and the fingerprint use it)
  std::string path;  // where it is read from
  int64_t bytes = 0;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(fmt::format("{}: cannot read", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<Document> find_documents(const std::vector<std::string>& sources) {
  std::vector<Document> docs;
  for (const auto& source : sources) {
    std::error_code ec;
    if (fs::is_directory(source, ec)) {
      for (const auto& file : list_text_files(source))
        docs.push_back(
            {fs::relative(file, source).string(), file, static_cast<int64_t>(fs::file_size(file))});
    } else if (fs::is_regular_file(source, ec)) {
      docs.push_back({fs::path(source).filename().string(), source,
                      static_cast<int64_t>(fs::file_size(source))});
    } else {
      throw UserError(fmt::format("--source {}: no such file or directory", source));
    }
  }
  std::erase_if(docs, [](const Document& d) { return d.bytes == 0; });
  if (docs.empty())
    throw UserError(fmt::format("--source {}: no text files (.txt, .rst, .md, .text) found",
                                fmt::join(sources, " ")));
  return docs;
}

// FNV-1a of the key through splitmix64, as a fraction in [0, 1).
double split_hash(const std::string& key) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  return static_cast<double>(splitmix64(h) >> 11) * 0x1.0p-53;
}

json args_json(const PrepareOptions& o) {
  std::vector<std::string> sources;
  for (const auto& s : o.sources) sources.push_back(fs::absolute(s).lexically_normal().string());
  return {{"sources", sources},
          {"tokenizer", o.tokenizer},
          {"vocab_size", o.tokenizer == "byte" ? 257 : o.vocab_size},
          {"val_fraction", o.val_fraction},
          {"shard_tokens", o.shard_tokens}};
}

std::string fingerprint(const std::vector<Document>& docs) {
  std::string listing;
  for (const auto& d : docs) listing += fmt::format("{}\t{}\n", d.key, d.bytes);
  return sha256_hex(listing);
}

// True when dir's manifest was made from these arguments and sources and its files are intact.
bool up_to_date(const std::string& dir, const json& args, const std::string& source_fp) {
  std::ifstream in(manifest_path(dir));
  if (!in) return false;
  const json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("args", json()) != args ||
      j.value("source_fingerprint", std::string()) != source_fp)
    return false;
  try {
    const LmManifest m = read_lm_manifest(dir);
    for (const SplitInfo* s : {&m.train, &m.val})
      for (size_t i = 0; i < s->shards.size(); ++i) {
        const fs::path p = fs::path(dir) / s->shards[i];
        if (!fs::exists(p) || sha256_hex(read_file(p.string())) != s->sha256[i]) return false;
      }
    if (!m.tokenizer_model.empty() && !fs::exists(fs::path(dir) / m.tokenizer_model)) return false;
  } catch (const UserError&) {
    return false;
  }
  return true;
}

// Packs the split's documents ([eos] doc [eos] doc ...) and writes them as shards of at most
// shard_tokens tokens.
json write_split(const std::string& name, const std::vector<const Document*>& docs,
                 const Tokenizer& tok, const PrepareOptions& o, int version) {
  std::vector<uint32_t> stream;
  int64_t bytes = 0;
  for (const Document* d : docs) {
    const std::string text = read_file(d->path);
    bytes += static_cast<int64_t>(text.size());
    stream.push_back(static_cast<uint32_t>(tok.eos_id()));
    for (int32_t id : tok.encode(text)) stream.push_back(static_cast<uint32_t>(id));
  }
  json shards = json::array();
  for (int64_t begin = 0, k = 0; begin < static_cast<int64_t>(stream.size());
       begin += o.shard_tokens, ++k) {
    const int64_t end = std::min<int64_t>(begin + o.shard_tokens, stream.size());
    const std::string file = fmt::format("{}_{:06d}.bin", name, k);
    const std::string bytes_out =
        encode_shard(std::vector<uint32_t>(stream.begin() + begin, stream.begin() + end), version);
    io::write_file_atomic((fs::path(o.out_dir) / file).string(), bytes_out);
    shards.push_back({{"file", file}, {"tokens", end - begin}, {"sha256", sha256_hex(bytes_out)}});
  }
  spdlog::info("data prepare: {} split: {} documents, {} bytes -> {} tokens in {} shard(s)", name,
               docs.size(), bytes, stream.size(), shards.size());
  return {
      {"documents", docs.size()}, {"bytes", bytes}, {"tokens", stream.size()}, {"shards", shards}};
}

void check_options(const PrepareOptions& o) {
  if (o.tokenizer != "bpe" && o.tokenizer != "byte")
    throw UserError(fmt::format("--tokenizer: expected bpe or byte; got '{}'", o.tokenizer));
  if (o.tokenizer == "bpe" && !sentencepiece_built())
    throw UserError(
        "--tokenizer bpe: this kimi-lab was built without SentencePiece; use "
        "--tokenizer byte (or install libsentencepiece-dev and rebuild)");
  if (o.tokenizer == "bpe" && (o.vocab_size < 300 || o.vocab_size > 1'000'000))
    throw UserError(
        fmt::format("--vocab-size must be in [300, 1000000] for bpe (256 byte "
                    "pieces are part of it); got {}",
                    o.vocab_size));
  if (!(o.val_fraction > 0 && o.val_fraction < 1))
    throw UserError(fmt::format("--val-fraction must be in (0, 1); got {}", o.val_fraction));
  if (o.shard_tokens < 1 || o.shard_tokens > INT32_MAX)
    throw UserError(
        fmt::format("shard size must be in [1, {}] tokens; got {}", INT32_MAX, o.shard_tokens));
  if (o.out_dir.empty()) throw UserError("--out must not be empty");
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  KIMI_CHECK(EVP_Digest(bytes.data(), bytes.size(), digest, &n, EVP_sha256(), nullptr) == 1,
             "sha256 failed");
  std::string hex;
  for (unsigned int i = 0; i < n; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

std::string default_corpus() {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/share/doc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("linux-doc-", 0) == 0 && fs::is_directory(e.path() / "html" / "_sources"))
      found.push_back((e.path() / "html" / "_sources").string());
  }
  std::sort(found.begin(), found.end());
  return found.empty() ? "" : found.back();
}

std::vector<std::string> list_text_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string ext = e.path().extension().string();
    if (ext == ".txt" || ext == ".rst" || ext == ".md" || ext == ".text")
      files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

PrepareResult prepare_lm_data(const PrepareOptions& options) {
  PrepareOptions o = options;
  if (o.sources.empty()) {
    const std::string corpus = default_corpus();
    if (corpus.empty())
      throw UserError(
          "--source not given and the default corpus (Debian's linux-doc, "
          "/usr/share/doc/linux-doc-*/html/_sources) is not installed: apt-get "
          "install linux-doc, or pass --source DIR|FILE");
    o.sources = {corpus};
  }
  check_options(o);
  const std::vector<Document> docs = find_documents(o.sources);
  const json args = args_json(o);
  const std::string source_fp = fingerprint(docs);
  PrepareResult result;
  result.manifest = manifest_path(o.out_dir);
  if (up_to_date(o.out_dir, args, source_fp)) {
    const LmManifest m = read_lm_manifest(o.out_dir);
    spdlog::info("data prepare: {} is up to date (same arguments and sources); nothing to do",
                 result.manifest);
    return {result.manifest, true, m.train.tokens, m.val.tokens};
  }
  std::vector<const Document*> train, val;
  for (const auto& d : docs) (split_hash(d.key) < o.val_fraction ? val : train).push_back(&d);
  // A tiny corpus may hash nothing into one split; the last document (by path) moves over.
  if (val.empty() && train.size() > 1) val.push_back(train.back()), train.pop_back();
  if (train.empty() && val.size() > 1) train.push_back(val.front()), val.erase(val.begin());
  if (train.empty() || val.empty())
    throw UserError(
        fmt::format("--source: {} document(s); a train and a validation split need "
                    "at least 2 files",
                    docs.size()));
  fs::create_directories(o.out_dir);
  fs::remove(result.manifest);  // from here on, the directory is not a valid data set until done

  std::unique_ptr<Tokenizer> tok;
  std::string model_file;
  if (o.tokenizer == "bpe") {
    std::vector<std::string> texts;
    for (const Document* d : train) texts.push_back(read_file(d->path));
    spdlog::info("data prepare: training a {}-piece BPE tokenizer on {} documents", o.vocab_size,
                 texts.size());
    const std::string model = train_bpe(texts, o.vocab_size, o.threads);
    model_file = "tokenizer.model";
    io::write_file_atomic((fs::path(o.out_dir) / model_file).string(), model);
    tok = load_bpe(model, (fs::path(o.out_dir) / model_file).string());
  } else {
    tok = make_byte_tokenizer();
  }
  const int version = shard_version_for_vocab(tok->vocab_size());
  json manifest = {{"format", kManifestFormat},       {"args", args},
                   {"sources", args["sources"]},      {"source_fingerprint", source_fp},
                   {"tokenizer", tok->kind()},        {"tokenizer_model", model_file},
                   {"vocab_size", tok->vocab_size()}, {"eos_id", tok->eos_id()},
                   {"shard_version", version}};
  if (!model_file.empty())
    manifest["tokenizer_sha256"] =
        sha256_hex(read_file((fs::path(o.out_dir) / model_file).string()));
  manifest["splits"] = {{"train", write_split("train", train, *tok, o, version)},
                        {"val", write_split("val", val, *tok, o, version)}};
  io::write_file_atomic(result.manifest, manifest.dump(2) + "\n");
  // Shards of an earlier, larger prepare are no longer listed: remove them.
  std::vector<std::string> listed;
  for (const char* s : {"train", "val"})
    for (const auto& sh : manifest["splits"][s]["shards"]) listed.push_back(sh["file"]);
  for (const auto& e : fs::directory_iterator(o.out_dir)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".bin" &&
        (name.rfind("train_", 0) == 0 || name.rfind("val_", 0) == 0) &&
        std::find(listed.begin(), listed.end(), name) == listed.end())
      fs::remove(e.path());
  }
  result.train_tokens = manifest["splits"]["train"]["tokens"];
  result.val_tokens = manifest["splits"]["val"]["tokens"];
  spdlog::info("data prepare: wrote {} ({} tokenizer, vocab {})", result.manifest, tok->kind(),
               tok->vocab_size());
  return result;
}

}  // namespace kimi::tasks
