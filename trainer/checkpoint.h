// Checkpoints: model parameters ("model.<name>") and optimizer state ("optim.*") in one
// safetensors file, written atomically, with the step in the metadata.
#pragma once

#include <string>

#include "core/nn/module.h"
#include "core/optim/optimizer.h"

namespace kimi {

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& opt,
                     int64_t step);
// Loads into model and optimizer; returns the step. UserError naming the file on mismatch.
int64_t load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt);

}  // namespace kimi
