// The data-parallel split of a step's batch (issue 14): train.batch_size is the global batch, and
// rank r trains on its own contiguous block of rows. Every rank samples the same global batch
// from the global step's seed, so the data order depends only on the step, not on the ranks.
#pragma once

#include <cstdint>

namespace kimi {

struct RowBlock {
  int64_t begin = 0, count = 0;
};

// Rank r's rows of a global batch of batch_size rows; a batch that does not divide by the world
// size is refused with one line naming train.batch_size (unequal blocks would weight the ranks'
// mean losses unequally).
RowBlock rank_rows(int64_t batch_size, int world_size, int rank);

}  // namespace kimi
