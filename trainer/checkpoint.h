// Checkpoints: model parameters ("model.<name>") and optimizer state ("optim.*") in one
// safetensors file, written atomically, with the step in the metadata.
#pragma once

#include <string>

#include "core/nn/module.h"
#include "core/optim/optimizer.h"

namespace kimi {

// UserError naming the file and the first tensor holding a NaN or an infinity; nothing is
// written then, so an earlier checkpoint stays the last good one.
void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& opt,
                     int64_t step);
// Loads into model and optimizer; returns the step. UserError naming the file on mismatch, on
// a NaN or an infinity in any tensor, or when the metadata key 'step' is not wholly an integer
// in [0, max_step] (max_step < 0: no upper bound). Nothing is loaded when it throws early.
int64_t load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt,
                        int64_t max_step = -1);

}  // namespace kimi
