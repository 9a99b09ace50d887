// Checkpoint save/load on top of core/io/tensor_io.
#include "trainer/checkpoint.h"

#include <cmath>
#include <optional>

#include "core/io/safetensors.h"
#include "core/io/tensor_io.h"

namespace kimi {

namespace {

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

}  // namespace

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& opt,
                     int64_t step) {
  std::map<std::string, Tensor> all;
  // Saved from host copies, whatever device the run is on.
  for (auto& [name, p] : model.named_parameters())
    all["model." + name] = p.detach().to(Device::kCPU);
  for (auto& [name, t] : opt.state_dict()) all[name] = t.detach().to(Device::kCPU);
  // Refused before anything is written, so the previous checkpoint stays the last good one.
  if (auto bad = first_non_finite(all))
    throw UserError(
        fmt::format("{}: not written: tensor '{}' is non-finite (NaN or inf)", path, *bad));
  io::save_tensors(path, all,
                   {{"step", std::to_string(step)}, {"format", "kimi-lab checkpoint v1"}});
}

int64_t load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt,
                        int64_t max_step) {
  // The metadata and the values are checked before the model or the optimizer is touched.
  const std::map<std::string, std::string> meta = io::SafetensorsFile::open(path).metadata();
  auto it = meta.find("step");
  if (it == meta.end())
    throw UserError(fmt::format("{}: not a kimi-lab checkpoint (no step in metadata)", path));
  const std::optional<int64_t> step = parse_step(it->second, max_step);
  if (!step)
    throw UserError(max_step >= 0
                        ? fmt::format("{}: metadata key 'step' is '{}', not an integer in [0, {}]",
                                      path, it->second, max_step)
                        : fmt::format("{}: metadata key 'step' is '{}', not a non-negative integer",
                                      path, it->second));
  std::map<std::string, Tensor> all = io::load_tensors(path);
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
  return *step;
}

}  // namespace kimi
