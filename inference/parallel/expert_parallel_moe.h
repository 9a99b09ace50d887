// The sparse MoE block split over ranks (expert parallel): every rank routes all tokens with the
// replicated router (so the top-k is the same everywhere), runs only its contiguous block of
// num_experts / w experts on the tokens routed to them, and adds its slice of the shared
// expert(s), split tensor-parallel over the hidden units as the dense MLP is (rather than on
// rank 0 alone, so that no rank does more work than another). The output is this rank's
// partial sum: the caller all-reduces it (one all_reduce_sum per MoE layer).
#pragma once

#include <memory>

#include "models/moe.h"

namespace kimi::inference {

class ExpertParallelMoe : public nn::Module {
 public:
  // Copies rank `rank`'s experts, the router and its shared-expert slice out of `full`.
  ExpertParallelMoe(const models::SparseMoeBlock& full, const models::MoeOptions& opt, int rank,
                    int world);
  // x [..., d] -> this rank's partial [..., d].
  Tensor forward(const Tensor& x) const;

  std::shared_ptr<models::MoeGate> gate;       // replicated
  std::shared_ptr<nn::SwiGLU> shared_experts;  // this rank's hidden units; may be null
  Tensor w13, w2;                              // this rank's experts, stacked

 private:
  models::MoeOptions opt_;
  int64_t first_expert_, num_local_;
};

}  // namespace kimi::inference
