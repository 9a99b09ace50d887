// ShardedKimiLinear: see sharded_kimi_linear.h.
#include "inference/parallel/sharded_kimi_linear.h"

#include "inference/parallel/rank_slices.h"
#include "inference/parallel/shard_plan.h"

namespace kimi::inference {
namespace {

// A layer built by `make` (at its rank's size, random weights) that then takes its slice of full.
template <class M, class Make>
std::shared_ptr<M> rank_copy(const nn::Module& full, const dist::Communicator& comm, Make make) {
  std::shared_ptr<M> local = make();
  load_rank_slices(*local, full, comm.rank(), comm.world_size());
  return local;
}

}  // namespace

Tensor sum_over_ranks(const Tensor& partial, dist::Communicator& comm) {
  KIMI_CHECK(partial.dtype() == DType::kF32, "sum_over_ranks: {} (the communicator sums f32)",
             dtype_name(partial.dtype()));
  Tensor host = partial.to(Device::kCPU).clone();
  comm.all_reduce_sum(host.data<float>(), static_cast<size_t>(host.numel()));
  return host.to(partial.device());
}

ShardedDecoderLayer::ShardedDecoderLayer(const models::KimiDecoderLayer& full,
                                         const models::KimiLinearConfig& c, int64_t layer,
                                         DType dtype, dist::Communicator& comm)
    : comm_(&comm) {
  const int world = comm.world_size();
  const models::KimiLinearConfig rc = rank_config(c, world);
  const int64_t d = c.hidden_size;
  Rng rng(0);  // the weights are overwritten by the slices
  self_attn = register_module("self_attn", rank_copy<models::Mixer>(*full.self_attn, comm, [&] {
                                return std::shared_ptr<models::Mixer>(models::make_mixer(
                                    models::mixer_options(rc, layer, dtype), rng));
                              }));
  if (full.block_sparse_moe) {
    block_sparse_moe = register_module(
        "block_sparse_moe",
        std::make_shared<ExpertParallelMoe>(*full.block_sparse_moe, models::moe_options(c, dtype),
                                            comm.rank(), world));
  } else {
    mlp = register_module("mlp", rank_copy<nn::SwiGLU>(*full.mlp, comm, [&] {
                            return std::make_shared<nn::SwiGLU>(d, rc.intermediate_size, rng,
                                                                nn::InitOptions{0.02, dtype});
                          }));
  }
  auto norm = [&](const nn::RMSNorm& n) {
    return rank_copy<nn::RMSNorm>(
        n, comm, [&] { return std::make_shared<nn::RMSNorm>(d, c.rms_norm_eps, dtype); });
  };
  input_layernorm = register_module("input_layernorm", norm(*full.input_layernorm));
  post_attention_layernorm =
      register_module("post_attention_layernorm", norm(*full.post_attention_layernorm));
}

Tensor ShardedDecoderLayer::forward(const Tensor& x, models::MixerState* state) {
  Tensor h = x + sum_over_ranks(self_attn->forward(input_layernorm->forward(x), state), *comm_);
  Tensor n = post_attention_layernorm->forward(h);
  return h +
         sum_over_ranks(block_sparse_moe ? block_sparse_moe->forward(n) : mlp->forward(n), *comm_);
}

ShardedKimiLinear::ShardedKimiLinear(const models::KimiLinearModel& model, dist::Communicator& comm)
    : config_(model.config()) {
  const models::KimiLinearConfig& c = config_;
  check_shardable(c, comm.world_size());
  if (model.dtype() != DType::kF32)
    throw UserError(fmt::format(
        "sharded inference: the model is {}; load it as f32 (the communicator sums f32)",
        dtype_name(model.dtype())));
  const DType dtype = model.dtype();
  const nn::InitOptions init{0.02, dtype};
  Rng rng(0);
  embed_tokens = register_module(
      "model.embed_tokens", rank_copy<nn::Embedding>(*model.embed_tokens, comm, [&] {
        return std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size, rng, init);
      }));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers.push_back(register_module(
        "model.layers." + std::to_string(i),
        std::make_shared<ShardedDecoderLayer>(*model.layers[size_t(i)], c, i, dtype, comm)));
  norm =
      register_module("model.norm", rank_copy<nn::RMSNorm>(*model.norm, comm, [&] {
                        return std::make_shared<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, dtype);
                      }));
  if (model.lm_head)
    lm_head = register_module("lm_head", rank_copy<nn::Linear>(*model.lm_head, comm, [&] {
                                return std::make_shared<nn::Linear>(c.hidden_size, c.vocab_size,
                                                                    false, rng, init);
                              }));
}

Tensor ShardedKimiLinear::forward(const Tensor& ids, models::KimiLinearState* state) {
  return models::kimi_linear_pass(
      ids, state, layers.size(), *embed_tokens,
      [&](size_t i, const Tensor& h, models::MixerState* s) { return layers[i]->forward(h, s); },
      *norm, lm_head.get());
}

models::KimiLinearState ShardedKimiLinear::new_state(int64_t batch) const {
  models::KimiLinearState s;
  for (const auto& layer : layers) s.layers.push_back(layer->self_attn->new_state(batch));
  return s;
}

}  // namespace kimi::inference
