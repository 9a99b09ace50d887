// Run directories and checkpoint discovery (trainer/run_dir.h).
#include "trainer/run_dir.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <system_error>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"

namespace kimi {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

std::string new_run_id() {
  // random_device alone may be deterministic on some platforms; the clock makes two ids made
  // in one process (tests) or on two machines differ anyway.
  std::random_device rd;
  std::seed_seq seq{
      rd(), rd(), rd(),
      static_cast<unsigned>(std::chrono::high_resolution_clock::now().time_since_epoch().count())};
  std::mt19937_64 gen(seq);
  return fmt::format("{:016x}", gen());
}

std::optional<RunIdentity> read_run_identity(const std::string& dir) {
  const fs::path path = fs::path(dir) / "run.json";
  if (!fs::exists(path)) return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(read_text(path), nullptr, false);
  if (!j.is_object() || !j.contains("run_id") || !j["run_id"].is_string() ||
      j["run_id"].get<std::string>().empty())
    throw UserError(fmt::format("{}: unreadable or without a 'run_id'", path.string()));
  RunIdentity id;
  id.run_id = j["run_id"].get<std::string>();
  if (j.contains("unstamped_max_step") && j["unstamped_max_step"].is_number_integer())
    id.unstamped_max_step = j["unstamped_max_step"].get<int64_t>();
  return id;
}

void write_run_identity(const std::string& dir, const RunIdentity& id) {
  nlohmann::json j = {{"run_id", id.run_id}};
  if (id.unstamped_max_step >= 0) j["unstamped_max_step"] = id.unstamped_max_step;
  io::write_file_atomic((fs::path(dir) / "run.json").string(), j.dump(2) + "\n");
}

std::string create_run_dir(const RunConfig& config, const std::vector<std::string>& overrides,
                           const std::string& dir) {
  const std::string path = dir.empty() ? (fs::path(config.out_dir) / config.name).string() : dir;
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw UserError(fmt::format("cannot create run directory '{}': {}", path, ec.message()));
  // run.json first: a directory with a config.yaml always has its run id.
  write_run_identity(path, RunIdentity{new_run_id(), -1});
  io::write_file_atomic(path + "/config.yaml", to_yaml(config));
  std::string lines;
  for (const auto& o : overrides) lines += o + "\n";
  io::write_file_atomic(path + "/overrides.txt", lines);
  return path;
}

bool holds_run(const std::string& dir) {
  const fs::path d(dir);
  return fs::exists(d / "config.yaml") || fs::exists(d / "metrics.csv") ||
         !list_checkpoints(dir).empty();
}

void record_resume_overrides(const std::string& dir, const RunConfig& config,
                             const std::vector<std::string>& overrides, int64_t step) {
  if (overrides.empty()) return;
  const fs::path path = fs::path(dir) / "overrides.txt";
  std::string text = read_text(path);
  if (!text.empty() && text.back() != '\n') text += '\n';
  text += fmt::format("# given on resume at step {}\n", step);
  for (const auto& o : overrides) text += o + "\n";
  io::write_file_atomic(path.string(), text);
  io::write_file_atomic((fs::path(dir) / "config.yaml").string(), to_yaml(config));
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  return (fs::path(dir) / fmt::format("ckpt_step{}.safetensors", step)).string();
}

std::vector<CheckpointRef> list_checkpoints(const std::string& dir) {
  static const std::string kPrefix = "ckpt_step", kSuffix = ".safetensors";
  std::error_code ec;
  std::vector<CheckpointRef> found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
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
    found.push_back(CheckpointRef{std::stoll(digits), entry.path().string()});
  }
  std::sort(found.begin(), found.end(),
            [](const CheckpointRef& a, const CheckpointRef& b) { return a.step < b.step; });
  return found;
}

std::optional<CheckpointRef> find_latest_checkpoint(const std::string& dir) {
  auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

std::vector<std::string> prune_checkpoints(const std::string& dir, int64_t keep) {
  std::vector<std::string> removed;
  if (keep <= 0) return removed;
  const auto all = list_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    if (fs::remove(all[i].path, ec)) removed.push_back(all[i].path);
  }
  return removed;
}

}  // namespace kimi
