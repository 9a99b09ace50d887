// Batched generation on the decode engine (generate.h): slot bookkeeping and host-side picking.
#include "inference/engine/generate.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/tensor/error.h"

namespace kimi::inference::engine {

int64_t pick_token(const double* logits, int64_t n, const Sampling& s, Rng& rng) {
  if (s.greedy) return std::max_element(logits, logits + n) - logits;
  const double top = *std::max_element(logits, logits + n);
  std::vector<double> p(n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += p[i] = std::exp((logits[i] - top) / s.temperature);
  double u = rng.uniform01() * sum;
  for (int64_t i = 0; i < n; ++i)
    if ((u -= p[i]) <= 0) return i;
  return n - 1;
}

uint64_t prompt_seed(uint64_t seed, int64_t i) {
  return i == 0 ? seed : mix_seed(seed, static_cast<uint64_t>(i));
}

GenerateOutput generate(DecodeEngine& e, const std::vector<std::vector<int32_t>>& prompts,
                        const GenerateOptions& o,
                        const std::function<void(const GenerateStep&)>& on_step) {
  const int64_t n = static_cast<int64_t>(prompts.size());
  const int64_t V = e.layout().config.vocab_size;
  if (n < 1) throw UserError("--prompt-ids: give at least one prompt");
  if (o.max_new < 1) throw UserError("--max-new-tokens must be >= 1");
  int64_t longest = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (prompts[i].empty()) throw UserError(fmt::format("--prompt-ids: prompt {} is empty", i + 1));
    for (int32_t id : prompts[i])
      if (id < 0 || id >= V)
        throw UserError(fmt::format("--prompt-ids: id {} outside the vocabulary [0, {})", id, V));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts[i].size()));
  }
  // The last new token is never fed back: prompt + max_new - 1 tokens per slot at most.
  e.allocate_slots(n, longest + o.max_new);
  GenerateOutput out;
  out.ids.assign(n, {});
  out.stopped.assign(n, false);
  if (o.keep_logits) out.logits.assign(n, {});
  std::vector<Rng> rngs;
  for (int64_t i = 0; i < n; ++i) rngs.emplace_back(prompt_seed(o.seed, i));
  std::vector<bool> done(n, false);
  std::vector<float> logits;
  std::vector<double> row(V);
  // Picks prompt i's next token from its logits row `lg`.
  auto take = [&](int64_t i, const float* lg) {
    std::copy(lg, lg + V, row.begin());
    const int32_t next = static_cast<int32_t>(pick_token(row.data(), V, o.sampling, rngs[i]));
    out.ids[i].push_back(next);
    if (o.keep_logits) out.logits[i].insert(out.logits[i].end(), lg, lg + V);
    if (o.stop_id >= 0 && next == o.stop_id) out.stopped[i] = true;
    if (out.stopped[i] || static_cast<int64_t>(out.ids[i].size()) >= o.max_new) done[i] = true;
  };
  auto finish = [&](GenerateStep& st, std::chrono::steady_clock::time_point t0) {
    st.ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    out.steps.push_back(st);
    if (on_step) on_step(st);
  };
  // Each prompt in one chunked prefill of its slot; its logits give the first new token.
  for (int64_t i = 0; i < n; ++i) {
    GenerateStep st;
    st.rows = 1, st.prompt_rows = static_cast<int64_t>(prompts[i].size());
    const auto t0 = std::chrono::steady_clock::now();
    e.prefill(static_cast<int32_t>(i), prompts[i], &logits);
    take(i, logits.data());
    finish(st, t0);
  }
  std::vector<int32_t> slots, tokens;
  for (;;) {
    slots.clear(), tokens.clear();
    for (int64_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      slots.push_back(static_cast<int32_t>(i));
      tokens.push_back(out.ids[i].back());
    }
    if (slots.empty()) break;
    GenerateStep st;
    st.rows = static_cast<int64_t>(slots.size());
    const auto t0 = std::chrono::steady_clock::now();
    e.step(slots, tokens, &logits);
    for (size_t r = 0; r < slots.size(); ++r)
      take(slots[r], logits.data() + static_cast<int64_t>(r) * V);
    finish(st, t0);
  }
  return out;
}

}  // namespace kimi::inference::engine
