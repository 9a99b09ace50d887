// Gradient accumulation (train.grad_accum): one optimizer step over a batch processed in equal
// row slices, so a batch too large for memory trains as it would in one piece.
#pragma once

#include "core/autograd/autograd.h"
#include "models/language_model.h"
#include "tasks/task.h"

namespace kimi {

// Forward and backward of `batch` in `micro_batches` slices of rows. The mean loss of slice i,
// over its n_i labelled positions, is scaled by n_i / n before its backward, so the gradients
// summed into the parameters are those of the whole batch's mean loss over its n labelled
// positions (not the mean of the slices' means, which differs when the n_i differ). Returns that
// whole-batch mean loss. The parameters' gradients must be zero (or undefined) on entry.
// `on_leaf_ready` goes to the last backward (the one that completes the gradients).
double forward_backward_accumulated(models::LanguageModel& model, const tasks::Batch& batch,
                                    int64_t micro_batches, Device device,
                                    const LeafGradReady& on_leaf_ready = nullptr);

}  // namespace kimi
