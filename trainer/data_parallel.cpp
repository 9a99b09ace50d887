#include "trainer/data_parallel.h"

#include <algorithm>
#include <vector>

#include "core/dist/grad_buckets.h"
#include "core/dist/overlapped_reducer.h"
#include "core/tensor/error.h"
#include "trainer/grad_accum.h"

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

double data_parallel_forward_backward(models::LanguageModel& model, const tasks::Batch& batch,
                                      int64_t micro_batches, Device device,
                                      dist::Communicator& comm, size_t bucket_bytes) {
  const RowBlock rows = rank_rows(batch.batch, comm.world_size(), comm.rank());
  const int64_t T = batch.seq_len;
  tasks::Batch mine = tasks::empty_batch(rows.count, T);
  std::copy_n(batch.inputs.begin() + rows.begin * T, rows.count * T, mine.inputs.begin());
  std::copy_n(batch.labels.begin() + rows.begin * T, rows.count * T, mine.labels.begin());
  const int64_t n_mine = std::count_if(mine.labels.begin(), mine.labels.end(),
                                       [](int32_t l) { return l != tasks::kIgnoreLabel; });
  // Counts travel as floats: exact below 2^24 labelled positions per step.
  float n_total = float(n_mine);
  comm.all_reduce_sum(&n_total, 1);
  KIMI_CHECK(n_total < 16777216.f, "{} labelled positions in one step overflow the f32 count",
             n_total);
  const double weight = n_total > 0 ? double(n_mine) / double(n_total) : 0.0;
  float loss = 0;
  if (device != Device::kCPU) {
    // On a GPU the gradients are summed after the backward, bucket by bucket in device
    // buffers (dist::all_reduce_grads): no overlap yet, the same sums.
    if (n_mine > 0)
      loss = float(forward_backward_accumulated(model, mine, micro_batches, device) *
                   double(n_mine) / double(n_total));
    dist::all_reduce_grads(model.parameters(), comm, bucket_bytes, 1.f, float(weight));
  } else {
    // The sums run on a thread of the reducer while this rank's backward goes on; the
    // communicator is the reducer's until finish() returns.
    dist::OverlappedReducer reducer(model.parameters(), comm, bucket_bytes, weight);
    if (n_mine > 0)
      loss =
          float(forward_backward_accumulated(model, mine, micro_batches, device, reducer.hook()) *
                double(n_mine) / double(n_total));
    reducer.finish();
  }
  comm.all_reduce_sum(&loss, 1);
  return loss;
}

models::LoadSum sum_loads_over_ranks(dist::Communicator& comm) {
  return [&comm](std::vector<double>& counts) {
    std::vector<float> f(counts.begin(), counts.end());
    for (float c : f)
      KIMI_CHECK(c < 16777216.f,
                 "{} tokens routed to one expert in one step overflow the f32 count", c);
    comm.all_reduce_sum(f.data(), f.size());
    counts.assign(f.begin(), f.end());
  };
}

}  // namespace kimi
