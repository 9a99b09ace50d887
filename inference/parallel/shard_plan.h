// How the Kimi-Linear hybrid splits over w ranks for inference (tensor parallel attention, expert
// parallel MoE; README "Several GPUs"), and what each rank then holds, from the config alone:
// - KDA and MLA heads: contiguous blocks of heads / w per rank (column-parallel projections,
//   row-parallel o_proj). Shared per layer: KDA's f_proj.0 / g_proj.0 (the low-rank first
//   factors) and o_norm; MLA's kv_a_proj_with_mqa, kv_a_layernorm and the q low-rank q_a_*.
// - Dense SwiGLU and the MoE's shared expert(s): the hidden units in w contiguous blocks.
// - Routed experts: num_experts / w contiguous experts per rank; the router is replicated.
// - Embedding, final norm, lm_head and the layer norms: replicated on every rank.
// Caches: a rank's KDA state and conv tails cover its heads; the MLA latent (and its rope slice)
// is shared by all heads, so every rank keeps the whole latent cache.
#pragma once

#include <cstdint>

#include "models/kimi_linear_config.h"

namespace kimi::inference {

// A kimi::UserError naming the config key when a count to split does not divide by `world`
// (or world < 1). Keys are checked only for the layer kinds the config has.
void check_shardable(const models::KimiLinearConfig& c, int world);

// The config of one rank's layers: KDA and MLA heads, dense intermediate size and experts
// divided by world (the shared experts' split is in the MoE block itself). Checks first.
models::KimiLinearConfig rank_config(const models::KimiLinearConfig& c, int world);

// Parameters one rank holds (HF's count, as models::parameter_count: KDA's g_b_proj without a
// bias). router: the replicated gates and correction biases of all MoE layers.
struct RankParameters {
  int64_t embedding = 0, lm_head = 0, kda = 0, mla = 0, dense_mlp = 0, norms = 0;
  int64_t router = 0, routed_experts = 0, shared_experts = 0;
  int64_t total = 0;
};
RankParameters rank_parameter_count(const models::KimiLinearConfig& c, int world);

// One rank's decode cache sizes (KDA: its heads; MLA: the whole latent, replicated).
models::CacheSizes rank_cache_sizes(const models::KimiLinearConfig& c, int world,
                                    int64_t state_bytes, int64_t latent_bytes);

}  // namespace kimi::inference
