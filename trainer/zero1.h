// ZeRO-1 AdamW (issue 14): each rank keeps the AdamW moments of its slice of every parameter
// (dist::shard_range of the parameter's elements, so odd counts shard), updates only that slice,
// then all-gathers the parameter. The same update as optim::AdamW on every rank, with 1/world
// of the optimizer memory. Checkpoints hold the full moments, so a run resumes on any number of
// ranks. An optim::Optimizer, so checkpoints and the trainer take it as they take AdamW.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/dist/communicator.h"
#include "core/optim/optimizer.h"

namespace kimi {

class Zero1AdamW : public optim::Optimizer {
 public:
  // params: the same names and shapes in the same order on every rank (CPU F32, contiguous).
  Zero1AdamW(nn::NamedTensors params, optim::AdamWOptions opt, dist::Communicator& comm,
             optim::DecayFilter decay = optim::default_decay_filter);
  // The parameters' gradients must already be summed over ranks (dist::all_reduce_grads).
  void step(double lr) override;
  // Full (unsharded) "optim.m.<name>", "optim.v.<name>", "optim.step": collective, call on all
  // ranks; the same keys and shapes as optim::AdamW's.
  std::map<std::string, Tensor> state_dict() const override;
  // Full state, from a run on any number of ranks; each rank keeps its slices.
  void load_state_dict(const std::map<std::string, Tensor>& state) override;

 private:
  nn::NamedTensors shards_;  // detached 1-d views of this rank's slices (they share storage)
  std::vector<dist::ShardRange> ranges_;
  dist::Communicator& comm_;
  std::unique_ptr<optim::AdamW> inner_;
};

}  // namespace kimi
