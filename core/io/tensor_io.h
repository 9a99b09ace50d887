// Named tensors to and from safetensors files (checkpoints, weights, golden references).
#pragma once

#include <map>
#include <string>

#include "core/tensor/tensor.h"

namespace kimi::io {

// Every tensor whose name starts with `prefix` (the prefix stripped), copied into CPU tensors
// of the file's dtype. Throws kimi::UserError naming the file on any problem.
std::map<std::string, Tensor> load_tensors(const std::string& path, const std::string& prefix = "");

// Writes the tensors (converted to contiguous CPU memory) atomically.
void save_tensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace kimi::io
