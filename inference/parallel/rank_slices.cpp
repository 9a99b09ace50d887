// load_rank_slices: see rank_slices.h.
#include "inference/parallel/rank_slices.h"

#include <map>

namespace kimi::inference {

void load_rank_slices(nn::Module& local, const nn::Module& full, int rank, int world) {
  std::map<std::string, Tensor> params;
  for (auto& [name, t] : full.named_parameters()) params.emplace(name, t);
  for (auto& [name, mine] : local.named_parameters()) {
    auto it = params.find(name);
    KIMI_CHECK(it != params.end(), "rank slices: the full layer has no parameter '{}'", name);
    const Tensor& whole = it->second;
    KIMI_CHECK(whole.dim() == mine.dim(), "rank slices: '{}' is {} here, {} in the full layer",
               name, shape_str(mine.shape()), shape_str(whole.shape()));
    int64_t split_dim = -1;
    for (int64_t d = 0; d < whole.dim(); ++d) {
      if (whole.size(d) == mine.size(d)) continue;
      KIMI_CHECK(split_dim < 0 && whole.size(d) == mine.size(d) * world,
                 "rank slices: '{}' is {} here, {} in the full layer (not 1/{} of one dim)", name,
                 shape_str(mine.shape()), shape_str(whole.shape()), world);
      split_dim = d;
    }
    if (split_dim < 0) {
      mine.copy_(whole);
    } else {
      const int64_t n = mine.size(split_dim);
      mine.copy_(whole.narrow(split_dim, rank * n, n));
    }
  }
}

int64_t parameter_bytes(const nn::Module& m) {
  int64_t bytes = 0;
  for (const Tensor& t : m.parameters()) bytes += t.numel() * int64_t(dtype_size(t.dtype()));
  return bytes;
}

}  // namespace kimi::inference
