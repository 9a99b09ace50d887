// Where one decode step's time goes: the engine times each part of the step (un-graphed, CUDA
// events between the parts, summed over layers) and this file counts the bytes each part must
// read (layer_costs.h's shapes, the engine's dtypes) and lays both out as a table, so a TPOT far
// above its floor is explained part by part rather than guessed.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "models/kimi_linear_config.h"

namespace kimi::inference::engine {

// In the order a step runs them (the ffn parts repeat per layer).
enum class StepPart : int {
  kEmbed,      // embedding rows
  kNorm,       // every RMSNorm (input, post-attention, final)
  kKdaProj,    // KDA in-projections: q k v f_a g_a b, then f_b g_b
  kKdaUpdate,  // short conv, gates, recurrent state update, output norm (one fused kernel)
  kKdaOut,     // KDA o_proj (into the residual)
  kMlaProj,    // MLA in-projections: q and kv_a
  kMlaAttend,  // latent append, absorb (kv_b), attention over the cache, up-projection
  kMlaOut,     // MLA o_proj
  kRoute,      // router scores, top-k, the per-step plan
  kExperts,    // routed experts: gate_up, SwiGLU, down, combine
  kFfn,        // the shared expert (MoE layers) and the dense MLP (first layers)
  kHead,       // lm_head (+ the length bump)
  kCount
};
inline constexpr int kStepParts = static_cast<int>(StepPart::kCount);
using StepPartMs = std::array<double, kStepParts>;

const char* step_part_name(StepPart p);

// Bytes each part must read (weights at the engine's dtypes: bf16 matrices, fp32 router; KDA
// state read + written, MLA latent read for the context plus the new row written; embedding
// rows read and logits written), for `batch` sequences at `context` tokens, with
// `distinct_experts` routed experts chosen in the step (summed over MoE layers).
StepPartMs step_part_bytes(const models::KimiLinearConfig& c, int64_t batch, int64_t context,
                           int64_t distinct_experts);

// One line per part with time: ms, share of the parts' sum, GB, GB/s, the part's own floor at
// `copy_bytes_per_s` and ms over that floor; then the sum beside `graph_ms` (the captured
// step's TPOT; the un-graphed parts add launch gaps and event overhead).
std::string breakdown_table(const StepPartMs& ms, const StepPartMs& bytes, double graph_ms,
                            double copy_bytes_per_s);

}  // namespace kimi::inference::engine
