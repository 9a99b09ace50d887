// Tensor- and expert-parallel inference of the Kimi-Linear hybrid (issue 14; README "Several
// GPUs"), on the CPU reference layers: rank r of w holds only its slices (shard_plan.h has the
// split) and runs the model's own layer classes on them, so the math per head and per expert is
// the unsharded model's. Megatron's pattern: column-parallel projections into the heads (or
// hidden units), row-parallel out of them, and one all_reduce_sum of the partial outputs after
// each mixer and each MLP / MoE (2 per layer). Every rank ends each forward with the same logits,
// bitwise (the communicator sums in rank order on every rank).
//
// Only the host math exists: no multi-GPU run has been made, and the CUDA decode engine
// (inference/engine) is not sharded.
#pragma once

#include <memory>
#include <vector>

#include "core/dist/communicator.h"
#include "inference/parallel/expert_parallel_moe.h"
#include "models/kimi_linear.h"

namespace kimi::inference {

class ShardedDecoderLayer : public nn::Module {
 public:
  ShardedDecoderLayer(const models::KimiDecoderLayer& full, const models::KimiLinearConfig& c,
                      int64_t layer, DType dtype, dist::Communicator& comm);
  Tensor forward(const Tensor& x, models::MixerState* state);

  std::shared_ptr<models::Mixer> self_attn;             // this rank's heads: partial o_proj
  std::shared_ptr<nn::SwiGLU> mlp;                      // dense: this rank's hidden units
  std::shared_ptr<ExpertParallelMoe> block_sparse_moe;  // MoE: this rank's experts
  std::shared_ptr<nn::RMSNorm> input_layernorm, post_attention_layernorm;  // replicated

 private:
  dist::Communicator* comm_;
};

class ShardedKimiLinear : public nn::Module {
 public:
  // Rank and world come from `comm` (which must outlive this). The weights are copies: `model`
  // may be freed afterwards. A kimi::UserError when the config does not split over the world
  // (shard_plan.h) or the model is not f32 (the communicator sums f32).
  ShardedKimiLinear(const models::KimiLinearModel& model, dist::Communicator& comm);

  // As KimiLinearModel::forward, with this rank's caches in `state` (from new_state): every
  // rank calls it with the same ids, in the same order.
  Tensor forward(const Tensor& ids, models::KimiLinearState* state = nullptr);
  // KDA layers: the state of this rank's heads; MLA layers: the whole latent cache (the latent
  // is shared by all heads, so each rank keeps a copy). KimiLinearModel::cache_usage reads it.
  models::KimiLinearState new_state(int64_t batch) const;
  const models::KimiLinearConfig& config() const { return config_; }

  std::shared_ptr<nn::Embedding> embed_tokens;  // replicated
  std::vector<std::shared_ptr<ShardedDecoderLayer>> layers;
  std::shared_ptr<nn::RMSNorm> norm;    // replicated
  std::shared_ptr<nn::Linear> lm_head;  // replicated; null when tied to embed_tokens

 private:
  models::KimiLinearConfig config_;
};

// In place on every rank: the sum of `partial` over the ranks (f32; any device, summed on the
// host).
Tensor sum_over_ranks(const Tensor& partial, dist::Communicator& comm);

}  // namespace kimi::inference
