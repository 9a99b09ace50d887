// The split rule and per-rank sizes of sharded Kimi-Linear inference; see shard_plan.h.
#include "inference/parallel/shard_plan.h"

#include <fmt/format.h>

#include "core/tensor/error.h"

namespace kimi::inference {
namespace {

struct LayerKinds {
  bool kda = false, mla = false, dense = false, moe = false;
  int64_t num_moe = 0;
};

LayerKinds layer_kinds(const models::KimiLinearConfig& c) {
  LayerKinds k;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    (c.is_mla(i) ? k.mla : k.kda) = true;
    if (c.is_moe(i))
      ++k.num_moe;
    else
      k.dense = true;
  }
  k.moe = k.num_moe > 0;
  return k;
}

void need_divisible(const char* key, int64_t value, int world) {
  if (value % world != 0)
    throw UserError(fmt::format(
        "{} = {} does not split over {} ranks (tensor / expert parallel inference needs a "
        "multiple of the world size)",
        key, value, world));
}

}  // namespace

void check_shardable(const models::KimiLinearConfig& c, int world) {
  if (world < 1) throw UserError(fmt::format("world size {}: want 1 or more ranks", world));
  const LayerKinds k = layer_kinds(c);
  if (k.kda) need_divisible("linear_attn_config.num_heads", c.kda_num_heads, world);
  if (k.mla) need_divisible("num_attention_heads", c.num_attention_heads, world);
  if (k.dense) need_divisible("intermediate_size", c.intermediate_size, world);
  if (k.moe) {
    need_divisible("num_experts", c.num_experts, world);
    need_divisible("moe_intermediate_size x num_shared_experts",
                   c.moe_intermediate_size * c.num_shared_experts, world);
  }
}

models::KimiLinearConfig rank_config(const models::KimiLinearConfig& c, int world) {
  check_shardable(c, world);
  models::KimiLinearConfig r = c;
  r.kda_num_heads /= world;
  r.num_attention_heads /= world;
  r.intermediate_size /= world;
  r.num_experts /= world;
  return r;
}

RankParameters rank_parameter_count(const models::KimiLinearConfig& c, int world) {
  // The mixers, the dense MLP and the replicated parts count as the full model's count of a
  // rank's config: nothing in them but the split dims depends on the head / hidden counts.
  // The MoE does not (its router keeps every expert), so it is counted here.
  const models::KimiLinearConfig rc = rank_config(c, world);
  const models::ParameterCount p = models::parameter_count(rc);
  RankParameters r;
  r.embedding = p.embedding, r.lm_head = p.lm_head, r.kda = p.kda, r.mla = p.mla;
  r.dense_mlp = p.dense_mlp, r.norms = p.norms;
  const int64_t n = layer_kinds(c).num_moe, d = c.hidden_size;
  const int64_t expert = 3 * d * c.moe_intermediate_size;
  r.router = n * (c.num_experts * d + c.num_experts);
  r.routed_experts = n * rc.num_experts * expert;
  r.shared_experts = n * c.num_shared_experts * expert / world;
  r.total = r.embedding + r.lm_head + r.kda + r.mla + r.dense_mlp + r.norms + r.router +
            r.routed_experts + r.shared_experts;
  return r;
}

models::CacheSizes rank_cache_sizes(const models::KimiLinearConfig& c, int world,
                                    int64_t state_bytes, int64_t latent_bytes) {
  return models::cache_sizes(rank_config(c, world), state_bytes, latent_bytes);
}

}  // namespace kimi::inference
