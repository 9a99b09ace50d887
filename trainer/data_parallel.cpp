#include "trainer/data_parallel.h"

#include <algorithm>

#include "core/dist/grad_buckets.h"
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
  float loss = 0;
  if (n_mine > 0) {
    const double weight = double(n_mine) / double(n_total);
    loss = float(forward_backward_accumulated(model, mine, micro_batches, device) * weight);
    for (const Tensor& p : model.parameters()) {
      const Tensor g = p.grad();
      if (!g.defined()) continue;
      KIMI_CHECK(g.device() == Device::kCPU && g.dtype() == DType::kF32 && g.is_contiguous(),
                 "data-parallel: gradient {} (CPU F32 only for now)", g.str());
      float* d = g.data<float>();
      for (int64_t k = 0; k < g.numel(); ++k) d[k] = float(double(d[k]) * weight);
    }
  }
  comm.all_reduce_sum(&loss, 1);
  dist::all_reduce_grads(model.parameters(), comm, bucket_bytes, 1.0f);
  return loss;
}

}  // namespace kimi
