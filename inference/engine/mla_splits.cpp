#include "inference/engine/mla_splits.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/tensor/error.h"

namespace kimi::inference::engine {

int mla_splits_per_sm(int64_t batch, int forced) {
  if (forced > 0) return forced;
  return batch <= 4 ? 1 : 2;
}

int mla_splits_per_sm_from_env() {
  const char* n = std::getenv("KIMI_ENGINE_MLA_SPLITS_PER_SM");
  if (n == nullptr || *n == '\0') return 0;
  const std::string v = n;
  if (v.size() != 1 || v[0] < '1' || v[0] > '8')
    throw UserError("KIMI_ENGINE_MLA_SPLITS_PER_SM=" + v +
                    ": give a whole number from 1 to 8 (unset: 1 up to 4 sequences, else 2)");
  return v[0] - '0';
}

int mla_max_splits_per_sm(int forced) { return forced > 0 ? forced : 2; }

int64_t mla_attend_splits(int64_t sms, int per_sm, int64_t batch, int64_t tokens) {
  const int64_t by_sm = (per_sm * sms + batch - 1) / batch;
  const int64_t by_len = (tokens + 31) / 32;
  return std::clamp<int64_t>(std::min(by_sm, by_len), 1, 1024);
}

}  // namespace kimi::inference::engine
