// Generation on the decode engine (`kimi-lab generate --engine`): several prompts at once, each
// in its own cache slot. First each prompt is prefilled into its slot (DecodeEngine::prefill,
// chunked; one prompt after the other), and the logits after its last token give its first new
// token. Then every step feeds each unfinished prompt the token it generated last, all of them
// batched. A prompt is finished after `max_new` new tokens or after generating `stop_id`;
// finished prompts are left out of later steps (their slots are not stepped again), so prompts
// of different lengths run side by side and never touch each other's caches.
//
// The next token is picked on the host from the step's fp32 logits (copied back every step, B x
// vocab floats): argmax (greedy), or a draw from softmax(logits / temperature). pick_token is
// also what the f32 model's generate uses, so a setting means the same on both paths.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor/rng.h"
#include "inference/engine/decode_engine.h"

namespace kimi::inference::engine {

struct Sampling {
  bool greedy = false;
  double temperature = 1.0;  // > 0; unused when greedy
};

// Argmax of logits[0, n) (the first of equal maxima), or a draw from softmax(logits /
// temperature) with one rng.uniform01().
int64_t pick_token(const double* logits, int64_t n, const Sampling& s, Rng& rng);

// The seed of prompt i's sampling stream: `seed` itself for the first prompt (so one prompt
// draws as the f32 path does), mix_seed(seed, i) for the others. A prompt's draws depend on its
// index and the seed, never on the other prompts or the batch.
uint64_t prompt_seed(uint64_t seed, int64_t i);

struct GenerateOptions {
  int64_t max_new = 16;  // >= 1
  Sampling sampling;
  uint64_t seed = 0;
  int64_t stop_id = -1;  // < 0: none
  bool keep_logits = false;
};

// One engine call: a prefill of one prompt (rows 1, prompt_rows = its tokens) or a decode step
// (rows = prompts stepped, prompt_rows 0).
struct GenerateStep {
  int64_t rows = 0;
  int64_t prompt_rows = 0;  // prompt tokens fed (a prefill)
  double ms = 0;            // wall time of the call, logits copy and picking included
};

struct GenerateOutput {
  std::vector<std::vector<int32_t>> ids;  // new tokens per prompt
  std::vector<bool> stopped;              // ended on stop_id (else on max_new)
  std::vector<GenerateStep> steps;        // the prefills (one per prompt), then the decode steps
  // With keep_logits: per prompt, the fp32 logits that each new token was picked from
  // ([new tokens, vocab], row-major).
  std::vector<std::vector<float>> logits;
};

// Allocates prompts.size() slots of (longest prompt + max_new) tokens on `e` (freeing its
// earlier caches) and generates. Throws UserError (naming --prompt-ids) for an empty prompt or
// an id outside the vocabulary. `on_step`, if set, is called after every step.
GenerateOutput generate(DecodeEngine& e, const std::vector<std::vector<int32_t>>& prompts,
                        const GenerateOptions& o,
                        const std::function<void(const GenerateStep&)>& on_step = {});

}  // namespace kimi::inference::engine
