// Safetensors <-> Tensor maps.
#include "core/io/tensor_io.h"

#include <cstring>

#include "core/autograd/autograd.h"
#include "core/io/safetensors.h"

namespace kimi::io {

std::map<std::string, Tensor> load_tensors(const std::string& path, const std::string& prefix) {
  SafetensorsFile file = SafetensorsFile::open(path);
  std::map<std::string, Tensor> out;
  for (const std::string& name : file.names()) {
    if (name.rfind(prefix, 0) != 0) continue;
    const TensorInfo& info = file.info(name);
    Tensor t = Tensor::empty(info.shape, info.dtype);
    if (info.nbytes)
      std::memcpy(t.raw_data(), info.data, info.nbytes);  // the mapping may be unaligned
    out[name.substr(prefix.size())] = t;
  }
  return out;
}

void save_tensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                  const std::map<std::string, std::string>& metadata) {
  NoGradGuard no_grad;
  std::vector<Tensor> keep;
  std::vector<TensorToWrite> items;
  for (const auto& [name, t] : tensors) {
    Tensor c = t.to(Device::kCPU).contiguous();
    keep.push_back(c);
    items.push_back({name, c.dtype(), c.shape(), c.raw_data()});
  }
  write_safetensors(path, items, metadata);
}

}  // namespace kimi::io
