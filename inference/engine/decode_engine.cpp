// The engine registry and the prefill's host-side rules (decode_engine.h).
#include "inference/engine/decode_engine.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/tensor/error.h"

namespace kimi::inference::engine {
namespace {

EngineFactory& factory() {
  static EngineFactory f;
  return f;
}

}  // namespace

void register_engine_factory(EngineFactory f) { factory() = std::move(f); }

bool engine_available() { return static_cast<bool>(factory()); }

std::unique_ptr<DecodeEngine> make_decode_engine(const WeightLayout& layout) {
  if (!factory())
    throw UserError(
        "decode engine: this kimi-lab was built without CUDA (configure with -DKIMI_LAB_CUDA=ON)");
  return factory()(layout);
}

void check_prefill_chunk(int64_t chunk) {
  if (chunk < 1 || chunk > kMaxPrefillChunk)
    throw UserError(fmt::format("prefill chunk {}: want a whole number of tokens in [1, {}]", chunk,
                                kMaxPrefillChunk));
}

std::vector<std::pair<int64_t, int64_t>> prefill_chunks(int64_t tokens, int64_t chunk) {
  check_prefill_chunk(chunk);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t at = 0; at < tokens; at += chunk) out.emplace_back(at, std::min(tokens, at + chunk));
  return out;
}

void check_prefill(const CacheLayout& caches, int64_t slot, int64_t length,
                   const std::vector<int32_t>& tokens, int64_t vocab) {
  if (caches.slots == 0) throw UserError("decode engine: allocate_slots() first");
  if (slot < 0 || slot >= caches.slots)
    throw UserError(
        fmt::format("decode engine: prefill of slot {} ({} slots allocated)", slot, caches.slots));
  if (tokens.empty()) throw UserError("decode engine: prefill of no tokens");
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab)
      throw UserError(fmt::format("decode engine: token {} out of range [0, {})", t, vocab));
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (length + n > caches.max_tokens)
    throw UserError(fmt::format(
        "decode engine: a prefill of {} tokens onto slot {} at {} tokens overflows its {} tokens",
        n, slot, length, caches.max_tokens));
}

}  // namespace kimi::inference::engine
