// How many pieces the decode engine's MLA attend cuts each sequence's latent cache into (the
// partials are merged afterwards), in one place for the engine (inference/engine/cuda) and its
// time model (engine_model.h), so that the simulator predicts the split count the engine runs.
#pragma once

#include <cstdint>

namespace kimi::inference::engine {

// Splits per SM for a step of `batch` sequences: 1 up to 4 sequences, 2 above. On an H100
// (bench-infer, session 18, the 48B cut to 14 layers) one per SM beat two at B = 1 and 4 at
// 128K and 1M (hybrid 128K B=1 4.28 -> 3.57 ms, all-MLA 9.09 -> 5.80); at B=64 session 14's
// microbenchmark found more splits faster. `forced` > 0 (KIMI_ENGINE_MLA_SPLITS_PER_SM) wins.
int mla_splits_per_sm(int64_t batch, int forced);

// KIMI_ENGINE_MLA_SPLITS_PER_SM as 1..8, or 0 when unset or empty; any other value is a
// UserError naming the variable.
int mla_splits_per_sm_from_env();

// The most splits per SM any batch can get (sizes the engine's partials workspace).
int mla_max_splits_per_sm(int forced);

// Splits of one sequence: min(ceil(per_sm x sms / batch), ceil(tokens / 32)), within [1, 1024].
int64_t mla_attend_splits(int64_t sms, int per_sm, int64_t batch, int64_t tokens);

}  // namespace kimi::inference::engine
