// Strict reading of a prepared LM data directory's manifest.json (tasks/lm_manifest.h).
#include "tasks/lm_manifest.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/tensor/error.h"

namespace kimi::tasks {
namespace {

using nlohmann::json;

const json& need(const json& j, const char* key, const std::string& file) {
  if (!j.is_object() || !j.contains(key))
    throw UserError(
        fmt::format("{}: missing key '{}' (run kimi-lab data prepare again)", file, key));
  return j.at(key);
}

template <class T>
T get(const json& j, const char* key, const std::string& file) {
  const json& v = need(j, key, file);
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw UserError(fmt::format("{}: key '{}' has the wrong type ({})", file, key, v.dump()));
  }
}

SplitInfo read_split(const json& j, const char* name, const std::string& file) {
  const json& s = need(j, name, file);
  SplitInfo info;
  info.documents = get<int64_t>(s, "documents", file);
  info.bytes = get<int64_t>(s, "bytes", file);
  info.tokens = get<int64_t>(s, "tokens", file);
  for (const json& shard : need(s, "shards", file)) {
    info.shards.push_back(get<std::string>(shard, "file", file));
    info.sha256.push_back(get<std::string>(shard, "sha256", file));
  }
  if (info.shards.empty())
    throw UserError(fmt::format("{}: the {} split has no shards", file, name));
  return info;
}

}  // namespace

std::string manifest_path(const std::string& dir) {
  return (std::filesystem::path(dir) / "manifest.json").string();
}

LmManifest read_lm_manifest(const std::string& dir) {
  const std::string file = manifest_path(dir);
  std::ifstream in(file);
  if (!in)
    throw UserError(
        fmt::format("{}: no manifest (prepare the data with `kimi-lab data prepare "
                    "--out {}`)",
                    file, dir));
  const json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw UserError(fmt::format("{}: not valid JSON", file));
  if (get<std::string>(j, "format", file) != kManifestFormat)
    throw UserError(fmt::format("{}: format '{}' is not '{}'", file,
                                get<std::string>(j, "format", file), kManifestFormat));
  LmManifest m;
  m.dir = dir;
  m.tokenizer = get<std::string>(j, "tokenizer", file);
  m.tokenizer_model = get<std::string>(j, "tokenizer_model", file);
  m.vocab_size = get<int64_t>(j, "vocab_size", file);
  m.eos_id = get<int32_t>(j, "eos_id", file);
  m.shard_version = get<int>(j, "shard_version", file);
  if (m.vocab_size <= 0 || m.eos_id < 0 || m.eos_id >= m.vocab_size)
    throw UserError(fmt::format("{}: vocab_size {} / eos_id {} are inconsistent", file,
                                m.vocab_size, m.eos_id));
  const json& splits = need(j, "splits", file);
  m.train = read_split(splits, "train", file);
  m.val = read_split(splits, "val", file);
  return m;
}

}  // namespace kimi::tasks
