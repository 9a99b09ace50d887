#include "trainer/data_parallel.h"

#include "core/tensor/error.h"

namespace kimi {

RowBlock rank_rows(int64_t batch_size, int world_size, int rank) {
  KIMI_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "rank {} of {}", rank, world_size);
  if (batch_size % world_size != 0)
    throw UserError(fmt::format(
        "train.batch_size {} does not divide by the {} ranks (it is the global batch; each rank "
        "takes batch_size / ranks rows)",
        batch_size, world_size));
  const int64_t per = batch_size / world_size;
  return {per * rank, per};
}

}  // namespace kimi
