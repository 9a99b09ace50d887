// Checkpoints: model parameters ("model.<name>") and optimizer state ("optim.*") in one
// safetensors file, written atomically. The metadata holds the step, the run id of the run
// directory that wrote it, the loss of that step, and a CRC-32 of the tensor data, so flipped
// bits and a checkpoint copied in from another run are refused on load.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/nn/module.h"
#include "core/optim/optimizer.h"

namespace kimi {

// What a checkpoint says about where it came from (metadata keys 'run_id' and 'loss').
struct CheckpointStamp {
  std::string run_id;          // "" = none (a checkpoint made outside a run directory)
  std::optional<double> loss;  // the training loss of the step that was saved
};

// UserError naming the file and the first tensor holding a NaN or an infinity; nothing is
// written then, so an earlier checkpoint stays the last good one.
void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& opt,
                     int64_t step, const CheckpointStamp& stamp = {});

struct CheckpointChecks {
  int64_t max_step = -1;  // 'step' must be an integer in [0, max_step] (< 0: no upper bound)
  // Non-empty: the checkpoint's 'run_id' must be this one. A checkpoint without a run id
  // (written before run ids existed) passes only when its step <= unstamped_max_step.
  std::string run_id;
  int64_t unstamped_max_step = -1;
};

struct LoadedCheckpoint {
  int64_t step = 0;
  CheckpointStamp stamp;
};

// Loads into model and optimizer. UserError naming the file on: a 'step' that is not wholly
// an integer within bounds, another run's id, a CRC-32 that does not match the data (flipped
// bits), a NaN or an infinity in any tensor, or a tensor set that does not fit the model.
// Nothing is loaded when it throws before the last check.
LoadedCheckpoint load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt,
                                 const CheckpointChecks& checks);
// The same with only the step bound; returns the step.
int64_t load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt,
                        int64_t max_step = -1);

// The 'crc32' metadata value save_checkpoint stores for these tensors (CRC-32 over each
// tensor's name and bytes, in name order), as 8 hex digits.
std::string checkpoint_checksum(const std::map<std::string, Tensor>& tensors);

}  // namespace kimi
