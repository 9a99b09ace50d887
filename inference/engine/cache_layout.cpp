// Per-slot cache sizes (cache_layout.h), the same formulas as models::cache_sizes.
#include "inference/engine/cache_layout.h"

#include "core/tensor/error.h"

namespace kimi::inference::engine {

int64_t CacheLayout::kda_bytes() const {
  return kda_layers * slots * (state_elems + conv_elems) * 4;
}

int64_t CacheLayout::mla_bytes() const { return mla_layers * slots * max_tokens * row_elems * 2; }

int64_t CacheLayout::bytes_per_slot() const {
  return kda_layers * (state_elems + conv_elems) * 4 + mla_layers * max_tokens * row_elems * 2;
}

int64_t CacheLayout::step_bytes(int64_t length) const {
  return kda_layers * (state_elems + conv_elems) * 4 * 2 +
         mla_layers * (length + 1) * row_elems * 2;
}

CacheLayout make_cache_layout(const models::KimiLinearConfig& c, int64_t slots,
                              int64_t max_tokens) {
  if (slots < 1 || max_tokens < 1)
    throw UserError("decode engine: caches need at least one slot and one token (got " +
                    std::to_string(slots) + " slots of " + std::to_string(max_tokens) + ")");
  CacheLayout l;
  l.slots = slots, l.max_tokens = max_tokens;
  const int64_t H = c.kda_num_heads, K = c.kda_head_dim;
  l.state_elems = H * K * K;
  l.conv_elems = 3 * (c.short_conv_kernel_size - 1) * H * K;
  l.row_elems = c.kv_lora_rank + c.qk_rope_head_dim;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const bool mla = c.is_mla(i);
    l.kda_index.push_back(mla ? -1 : l.kda_layers);
    l.mla_index.push_back(mla ? l.mla_layers : -1);
    (mla ? l.mla_layers : l.kda_layers) += 1;
  }
  return l;
}

}  // namespace kimi::inference::engine
