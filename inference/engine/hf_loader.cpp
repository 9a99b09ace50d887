// HF checkpoint loading for the engine (hf_loader.h). The shard list comes from
// models::checkpoint_files, which already names a missing index or model.safetensors.
#include "inference/engine/hf_loader.h"

#include <fmt/format.h>

#include <filesystem>
#include <set>

#include "core/io/safetensors.h"
#include "core/tensor/error.h"
#include "models/kimi_linear.h"

namespace kimi::inference::engine {
namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Our A_log is [H]; HF stores [1, 1, H, 1]. Everything else must match exactly.
bool shape_matches(const WeightEntry& e, const std::vector<int64_t>& got) {
  if (got == e.shape) return true;
  if (!e.name.ends_with(".A_log")) return false;
  int64_t n = 1;
  for (int64_t s : got) n *= s;
  return n == e.numel();
}

}  // namespace

int64_t load_hf_checkpoint(const std::string& dir, const WeightLayout& layout,
                           const TensorSink& sink) {
  namespace fs = std::filesystem;
  std::set<std::string> loaded;
  for (const std::string& file : models::checkpoint_files(dir)) {
    if (!fs::exists(file))
      throw UserError(
          fmt::format("{}: shard listed in model.safetensors.index.json is missing", file));
    const io::SafetensorsFile f = io::SafetensorsFile::open(file);
    for (const std::string& name : f.names()) {
      const WeightEntry* e = layout.find(name);
      if (!e)
        throw UserError(
            fmt::format("{}: unexpected tensor '{}' (not in the model the config "
                        "describes)",
                        file, name));
      const io::TensorInfo& info = f.info(name);
      if (!shape_matches(*e, info.shape))
        throw UserError(fmt::format("{}: tensor '{}' has shape {}, the config wants {}", file, name,
                                    shape_text(info.shape), shape_text(e->shape)));
      const std::vector<float> data = f.read_f32(name);
      sink(*e, data.data(), static_cast<int64_t>(data.size()));
      loaded.insert(name);
    }
  }
  for (const WeightEntry& e : layout.entries)
    if (!loaded.count(e.name) && !e.optional)
      throw UserError(fmt::format("{}: checkpoint has no tensor '{}' (shape {})", dir, e.name,
                                  shape_text(e.shape)));
  return static_cast<int64_t>(loaded.size());
}

}  // namespace kimi::inference::engine
