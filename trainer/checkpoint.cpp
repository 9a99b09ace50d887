// Checkpoint save/load on top of core/io/tensor_io.
#include "trainer/checkpoint.h"

#include <array>
#include <cmath>
#include <cstddef>
#include <optional>

#include "core/io/safetensors.h"
#include "core/io/tensor_io.h"

namespace kimi {

namespace {

constexpr const char* kFormatV1 = "kimi-lab checkpoint v1";  // step only (before checksums)
constexpr const char* kFormat = "kimi-lab checkpoint v2";    // + crc32, run_id, loss

// CRC-32 (IEEE 802.3, the one zip and PNG use): every single-bit and burst error up to 32 bits
// changes it, which is what a flipped bit on disk or in transit looks like.
class Crc32 {
 public:
  void add(const void* data, size_t n) {
    static const std::array<uint32_t, 256> table = [] {
      std::array<uint32_t, 256> t{};
      for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
      }
      return t;
    }();
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) crc_ = table[(crc_ ^ p[i]) & 0xFF] ^ (crc_ >> 8);
  }
  // The name and its terminating zero, then the bytes: a renamed tensor changes the sum too.
  void add_tensor(const std::string& name, const void* data, size_t n) {
    add(name.c_str(), name.size() + 1);
    add(data, n);
  }
  std::string hex() const { return fmt::format("{:08x}", crc_ ^ 0xFFFFFFFFu); }

 private:
  uint32_t crc_ = 0xFFFFFFFFu;
};

// The checksum of the data as it lies in the file (std::map order = name order).
std::string file_checksum(const io::SafetensorsFile& file) {
  std::map<std::string, const io::TensorInfo*> by_name;
  for (const auto& name : file.names()) by_name[name] = &file.info(name);
  Crc32 crc;
  for (const auto& [name, info] : by_name) crc.add_tensor(name, info->data, info->nbytes);
  return crc.hex();
}

// The name of the first float tensor holding a NaN or an infinity, if any: a checkpoint that
// holds one would only resume into a diverged run, so it is neither written nor loaded.
std::optional<std::string> first_non_finite(const std::map<std::string, Tensor>& tensors) {
  for (const auto& [name, t] : tensors) {
    if (!is_floating(t.dtype())) continue;
    for (double v : t.to_vector<double>())
      if (!std::isfinite(v)) return name;
  }
  return std::nullopt;
}

// The whole string a decimal integer in [0, max_step] (max_step < 0: no upper bound);
// std::stoll alone would take "1x0" as 1.
std::optional<int64_t> parse_step(const std::string& s, int64_t max_step) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const int64_t step = std::stoll(s);
  if (max_step >= 0 && step > max_step) return std::nullopt;
  return step;
}

std::optional<std::string> meta_value(const std::map<std::string, std::string>& meta,
                                      const std::string& key) {
  auto it = meta.find(key);
  if (it == meta.end()) return std::nullopt;
  return it->second;
}

int64_t checked_step(const std::string& path, const std::map<std::string, std::string>& meta,
                     int64_t max_step) {
  const auto text = meta_value(meta, "step");
  if (!text)
    throw UserError(fmt::format("{}: not a kimi-lab checkpoint (no step in metadata)", path));
  const std::optional<int64_t> step = parse_step(*text, max_step);
  if (!step)
    throw UserError(max_step >= 0
                        ? fmt::format("{}: metadata key 'step' is '{}', not an integer in [0, {}]",
                                      path, *text, max_step)
                        : fmt::format("{}: metadata key 'step' is '{}', not a non-negative integer",
                                      path, *text));
  return *step;
}

void check_run_id(const std::string& path, const std::map<std::string, std::string>& meta,
                  int64_t step, const CheckpointChecks& checks) {
  if (checks.run_id.empty()) return;
  const auto id = meta_value(meta, "run_id");
  if (!id) {
    if (step <= checks.unstamped_max_step) return;
    throw UserError(fmt::format(
        "{}: the checkpoint carries no run id, so it cannot be told from another run's; "
        "this run directory's id is {} (run.json)",
        path, checks.run_id));
  }
  if (*id != checks.run_id)
    throw UserError(fmt::format(
        "{}: the checkpoint belongs to another run (run id {}, this run directory's is {}); "
        "move it out, or resume the run it came from",
        path, *id, checks.run_id));
}

void check_checksum(const std::string& path, const io::SafetensorsFile& file) {
  const auto& meta = file.metadata();
  const auto stored = meta_value(meta, "crc32");
  if (!stored) {
    if (meta_value(meta, "format") == std::optional<std::string>(kFormatV1)) return;
    throw UserError(fmt::format("{}: the checkpoint has no checksum (metadata key 'crc32')", path));
  }
  const std::string actual = file_checksum(file);
  if (*stored != actual)
    throw UserError(fmt::format(
        "{}: the data does not match its checksum (crc32 {} stored, {} read): the file is "
        "corrupt; resume from an earlier checkpoint (move this one out)",
        path, *stored, actual));
}

}  // namespace

std::string checkpoint_checksum(const std::map<std::string, Tensor>& tensors) {
  Crc32 crc;
  for (const auto& [name, t] : tensors) {
    const Tensor c = t.to(Device::kCPU).contiguous();
    crc.add_tensor(name, c.raw_data(), static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
  }
  return crc.hex();
}

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& opt,
                     int64_t step, const CheckpointStamp& stamp) {
  std::map<std::string, Tensor> all;
  // Saved from host copies, whatever device the run is on.
  for (auto& [name, p] : model.named_parameters())
    all["model." + name] = p.detach().to(Device::kCPU).contiguous();
  for (auto& [name, t] : opt.state_dict()) all[name] = t.detach().to(Device::kCPU).contiguous();
  // Refused before anything is written, so the previous checkpoint stays the last good one.
  if (auto bad = first_non_finite(all))
    throw UserError(
        fmt::format("{}: not written: tensor '{}' is non-finite (NaN or inf)", path, *bad));
  std::map<std::string, std::string> meta = {
      {"step", std::to_string(step)}, {"format", kFormat}, {"crc32", checkpoint_checksum(all)}};
  if (!stamp.run_id.empty()) meta["run_id"] = stamp.run_id;
  // Round-trip precision, so a run finished from this checkpoint reports the same final loss.
  if (stamp.loss) meta["loss"] = fmt::format("{:.17g}", *stamp.loss);
  io::save_tensors(path, all, meta);
}

LoadedCheckpoint load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt,
                                 const CheckpointChecks& checks) {
  LoadedCheckpoint out;
  std::map<std::string, Tensor> all;
  {
    // The metadata and the values are checked before the model or the optimizer is touched.
    const io::SafetensorsFile file = io::SafetensorsFile::open(path);
    const auto& meta = file.metadata();
    out.step = checked_step(path, meta, checks.max_step);
    check_run_id(path, meta, out.step, checks);
    check_checksum(path, file);
    out.stamp.run_id = meta_value(meta, "run_id").value_or("");
    if (const auto loss = meta_value(meta, "loss")) {
      try {
        out.stamp.loss = std::stod(*loss);
      } catch (const std::exception&) {
        throw UserError(fmt::format("{}: metadata key 'loss' is '{}', not a number", path, *loss));
      }
    }
  }
  all = io::load_tensors(path);
  if (auto bad = first_non_finite(all))
    throw UserError(fmt::format("{}: tensor '{}' is non-finite (NaN or inf)", path, *bad));
  std::map<std::string, Tensor> params, state;
  for (auto& [name, t] : all) {
    if (name.rfind("model.", 0) == 0)
      params[name.substr(6)] = t;
    else
      state[name] = t;
  }
  try {
    model.load_state_dict(params, /*strict=*/true);
    if (opt) opt->load_state_dict(state);
  } catch (const UserError& e) {
    throw UserError(fmt::format("{}: {}", path, e.what()));
  }
  return out;
}

int64_t load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt,
                        int64_t max_step) {
  CheckpointChecks checks;
  checks.max_step = max_step;
  return load_checkpoint(path, model, opt, checks).step;
}

}  // namespace kimi
