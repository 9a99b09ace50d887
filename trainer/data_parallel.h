// The data-parallel split of a step's batch (issue 14): train.batch_size is the global batch, and
// rank r trains on its own contiguous block of rows. Every rank samples the same global batch
// from the global step's seed, so the data order depends only on the step, not on the ranks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dist/communicator.h"
#include "models/language_model.h"
#include "tasks/task.h"

namespace kimi {

struct RowBlock {
  int64_t begin = 0, count = 0;
};

// Rank r's rows of a global batch of batch_size rows; a batch that does not divide by the world
// size is refused with one line naming train.batch_size (unequal blocks would weight the ranks'
// mean losses unequally).
RowBlock rank_rows(int64_t batch_size, int world_size, int rank);

// One data-parallel forward and backward of the global batch: this rank's rows (rank_rows), in
// micro_batches slices (train.grad_accum), its gradient weighted by its share of the global
// batch's labelled positions, then summed over ranks in buckets of bucket_bytes while the
// backward goes on (dist::OverlappedReducer). Afterwards every rank holds the gradient of the
// global batch's mean loss, as one rank would; returns that mean loss. CPU F32 parameters (the
// TCP communicator).
double data_parallel_forward_backward(models::LanguageModel& model, const tasks::Batch& batch,
                                      int64_t micro_batches, Device device,
                                      dist::Communicator& comm, size_t bucket_bytes);

// The MoE loads (routed tokens per expert) of one layer summed over the ranks, for
// LanguageModel::after_optimizer_step: every rank then moves its router biases as one process
// would over the global batch. Counts travel as floats: exact below 2^24 per expert per step.
models::LoadSum sum_loads_over_ranks(dist::Communicator& comm);

}  // namespace kimi
