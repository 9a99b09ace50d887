// Checkpoint save/load on top of core/io/tensor_io.
#include "trainer/checkpoint.h"

#include "core/io/safetensors.h"
#include "core/io/tensor_io.h"

namespace kimi {

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& opt,
                     int64_t step) {
  std::map<std::string, Tensor> all;
  // Saved from host copies, whatever device the run is on.
  for (auto& [name, p] : model.named_parameters())
    all["model." + name] = p.detach().to(Device::kCPU);
  for (auto& [name, t] : opt.state_dict()) all[name] = t.detach().to(Device::kCPU);
  io::save_tensors(path, all,
                   {{"step", std::to_string(step)}, {"format", "kimi-lab checkpoint v1"}});
}

int64_t load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt) {
  std::map<std::string, Tensor> all = io::load_tensors(path);
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
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  const auto& meta = file.metadata();
  auto it = meta.find("step");
  if (it == meta.end())
    throw UserError(fmt::format("{}: not a kimi-lab checkpoint (no step in metadata)", path));
  return std::stoll(it->second);
}

}  // namespace kimi
