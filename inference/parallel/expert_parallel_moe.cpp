// ExpertParallelMoe: see expert_parallel_moe.h.
#include "inference/parallel/expert_parallel_moe.h"

#include <vector>

#include "inference/parallel/rank_slices.h"

namespace kimi::inference {

ExpertParallelMoe::ExpertParallelMoe(const models::SparseMoeBlock& full,
                                     const models::MoeOptions& opt, int rank, int world)
    : opt_(opt),
      first_expert_(rank * opt.num_experts / world),
      num_local_(opt.num_experts / world) {
  Rng rng(0);  // the weights are overwritten by the copies below
  gate = register_module("gate", std::make_shared<models::MoeGate>(opt, rng));
  load_rank_slices(*gate, *full.gate, rank, world);
  const std::vector<std::shared_ptr<models::MoeExpert>> mine(
      full.experts.begin() + first_expert_, full.experts.begin() + first_expert_ + num_local_);
  const models::StackedExperts st = models::stack_experts(mine);  // new tensors: copies
  w13 = register_parameter("experts.w13", st.w13);
  w2 = register_parameter("experts.w2", st.w2);
  if (full.shared_experts) {
    const int64_t hidden = full.shared_experts->gate_proj->weight.size(0) / world;
    shared_experts = register_module(
        "shared_experts", std::make_shared<nn::SwiGLU>(opt.d_model, hidden, rng,
                                                       nn::InitOptions{opt.init_std, opt.dtype}));
    load_rank_slices(*shared_experts, *full.shared_experts, rank, world);
  }
}

Tensor ExpertParallelMoe::forward(const Tensor& x) const {
  const int64_t d = opt_.d_model;
  const int64_t N = x.numel() / d, S = N * opt_.top_k;
  Tensor x2 = nn::autocast(x.reshape({N, d}));
  const models::RoutedSlots r = models::route_slots(x2, *gate, opt_);
  // The sorted slots of this rank's experts are one contiguous run [lo, hi); the other ranks'
  // rows stay zero here and come in through the all-reduce.
  const std::vector<int64_t> off = r.sorted.offsets.to_vector<int64_t>();
  const int64_t lo = off[size_t(first_expert_)], hi = off[size_t(first_expert_ + num_local_)];
  Tensor ys = Tensor::zeros({S, d}, x2.dtype(), x2.device());
  if (hi > lo) {
    std::vector<int64_t> local_off(off.begin() + first_expert_,
                                   off.begin() + first_expert_ + num_local_ + 1);
    for (int64_t& o : local_off) o -= lo;
    Tensor xs = gather_rows(x2, r.sorted.token.narrow(0, lo, hi - lo));
    Tensor mine = models::grouped_swiglu(
        xs, {w13, w2}, Tensor::from_vector(local_off, {num_local_ + 1}).to(x2.device()));
    std::vector<Tensor> parts;
    if (lo > 0) parts.push_back(ys.narrow(0, 0, lo));
    parts.push_back(mine);
    if (hi < S) parts.push_back(ys.narrow(0, hi, S - hi));
    ys = concat(parts, 0);
  }
  Tensor out = models::combine_slots(ys, r.sorted.position, r.weight);
  if (shared_experts) out = out + shared_experts->forward(x2);
  return out.reshape(x.shape());
}

}  // namespace kimi::inference
