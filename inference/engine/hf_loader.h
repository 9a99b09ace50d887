// Loading a Hugging Face Kimi-Linear checkpoint (config.json + model.safetensors or sharded
// model-*-of-*.safetensors with an index) into the engine's arena, one tensor at a time: each
// is checked against the layout (name, shape), read as fp32 and handed to `sink`, which puts it
// on the device in the entry's dtype. Every fault is one kimi::UserError naming the file and the
// tensor: an unknown tensor, a shape mismatch, a tensor the checkpoint lacks, a missing shard.
#pragma once

#include <functional>
#include <string>

#include "inference/engine/weight_layout.h"

namespace kimi::inference::engine {

using TensorSink = std::function<void(const WeightEntry&, const float* data, int64_t numel)>;

// Returns the number of tensors loaded. Optional entries the checkpoint lacks are left to the
// caller (zero them first).
int64_t load_hf_checkpoint(const std::string& dir, const WeightLayout& layout,
                           const TensorSink& sink);

}  // namespace kimi::inference::engine
