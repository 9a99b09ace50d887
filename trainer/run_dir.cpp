// Run directories and checkpoint discovery (trainer/run_dir.h).
#include "trainer/run_dir.h"

#include <filesystem>
#include <system_error>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"

namespace kimi {

std::string create_run_dir(const RunConfig& config, const std::vector<std::string>& overrides,
                           const std::string& dir) {
  const std::string path =
      dir.empty() ? (std::filesystem::path(config.out_dir) / config.name).string() : dir;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw UserError(fmt::format("cannot create run directory '{}': {}", path, ec.message()));
  io::write_file_atomic(path + "/config.yaml", to_yaml(config));
  std::string lines;
  for (const auto& o : overrides) lines += o + "\n";
  io::write_file_atomic(path + "/overrides.txt", lines);
  return path;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  return (std::filesystem::path(dir) / fmt::format("ckpt_step{}.safetensors", step)).string();
}

std::optional<CheckpointRef> find_latest_checkpoint(const std::string& dir) {
  static const std::string kPrefix = "ckpt_step", kSuffix = ".safetensors";
  std::error_code ec;
  std::optional<CheckpointRef> best;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= kPrefix.size() + kSuffix.size() || name.rfind(kPrefix, 0) != 0 ||
        name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
      continue;
    }
    const std::string digits =
        name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
    // Only plain digits: skips temporaries and copies such as ckpt_step10.bak.safetensors.
    if (digits.empty() || digits.size() > 18 ||
        digits.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    const int64_t step = std::stoll(digits);
    if (!best || step > best->step) best = CheckpointRef{step, entry.path().string()};
  }
  return best;
}

}  // namespace kimi
