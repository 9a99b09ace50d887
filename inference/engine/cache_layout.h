// The decode engine's per-sequence caches, preallocated for `slots` sequences of up to
// `max_tokens` tokens each (appended in place, never reallocated):
//   KDA layer: fp32 state [slots, H, K, V] and fp32 conv tails [slots, 3, W-1, H*K]
//              (q, k, v tails: the last W-1 inputs of each short convolution, oldest first);
//   MLA layer: bf16 rows [slots, max_tokens, kv_lora_rank + qk_rope_head_dim] (the normed
//              latent, then the shared rope slice, unrotated: NoPE).
// Per sequence these are exactly models::cache_sizes(c, 4, 2).hybrid(max_tokens) bytes, the
// simulator's cache of one sequence (inference/simulator.h cache_bytes_per_seq).
#pragma once

#include <cstdint>
#include <vector>

#include "models/kimi_linear_config.h"

namespace kimi::inference::engine {

struct CacheLayout {
  int64_t slots = 0, max_tokens = 0;
  int64_t kda_layers = 0, mla_layers = 0;
  int64_t state_elems = 0, conv_elems = 0;  // per slot per KDA layer (fp32)
  int64_t row_elems = 0;                    // per token per MLA layer (bf16)
  // Per decoder layer: its index among the KDA (or MLA) layers, -1 for the other kind.
  std::vector<int64_t> kda_index, mla_index;
  int64_t kda_bytes() const;  // all slots, all KDA layers (state + tails)
  int64_t mla_bytes() const;  // all slots, all MLA layers
  int64_t bytes_per_slot() const;
  // Bytes a decode step reads and writes for one sequence at `length` tokens: the KDA state and
  // tails read and written, the MLA rows of its length read (and one row written).
  int64_t step_bytes(int64_t length) const;
};

CacheLayout make_cache_layout(const models::KimiLinearConfig& c, int64_t slots, int64_t max_tokens);

}  // namespace kimi::inference::engine
