// The decode engine's interface (docs/architecture.md: host code here, the CUDA implementation
// in inference/engine/cuda, an OBJECT library that registers itself when linked, as
// core/cuda does). A build without it has no engine: make_decode_engine throws one line.
//
// One engine = one model's bf16 weights on the device (weight_layout.h) and, once
// allocate_slots() ran, its caches for `slots` sequences (cache_layout.h). A decode step takes
// one token for each of `n` slots (any slots, each at its own length), runs every layer for all
// of them in one pass, appends to their caches in place and advances their lengths; nothing in
// a step waits for the host. A prefill appends a whole prompt to one slot in chunks: every
// layer runs over a chunk's rows in one pass (GEMMs, the chunk delta rule, causal attention over
// the latent), and the caches end as that many decode steps would leave them (up to the order
// of sums and the TF32 products of the chunk kernels and the attention: ~1e-3).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "inference/engine/cache_layout.h"
#include "inference/engine/step_breakdown.h"
#include "inference/engine/weight_layout.h"

namespace kimi::inference::engine {

class DecodeEngine {
 public:
  virtual ~DecodeEngine() = default;
  virtual const WeightLayout& layout() const = 0;
  // Every weight from a counter-based hash of (seed, tensor, index), on the device.
  virtual void init_random(uint64_t seed) = 0;
  // A Hugging Face checkpoint whose config equals the layout's (hf_loader.h).
  virtual void load_hf(const std::string& dir) = 0;
  // A weight as fp32 on the host (tests: the same weights in the f32 reference model).
  virtual std::vector<float> read_weight(const WeightEntry& e) const = 0;
  // Frees any previous caches. Throws UserError when they do not fit in device memory.
  virtual void allocate_slots(int64_t slots, int64_t max_tokens) = 0;
  virtual const CacheLayout& caches() const = 0;
  // Every slot empty (length 0, states and tails zero).
  virtual void reset() = 0;
  // Slots [0, n) at `length` tokens with synthetic cache contents (hash values, not a real
  // prefix): for timing long contexts without a prefill.
  virtual void fill_synthetic(int64_t n, int64_t length, uint64_t seed) = 0;
  // One decode step: tokens[i] goes to slot slots[i]. logits: fp32 [n, vocab] (host), or null.
  virtual void step(const std::vector<int32_t>& slots, const std::vector<int32_t>& tokens,
                    std::vector<float>* logits) = 0;
  // Chunked prefill: appends `tokens` to slot `slot` (at length(slot) tokens now), in chunks of
  // at most prefill_chunk() tokens, each chunk one pass of every layer over its rows; the caches
  // end as tokens.size() decode steps would leave them (to ~1e-3). logits: the fp32 logits [vocab]
  // after the last token (host), or null. Throws UserError as check_prefill does.
  virtual void prefill(int32_t slot, const std::vector<int32_t>& tokens,
                       std::vector<float>* logits) = 0;
  // Tokens per prefill chunk, in [1, kMaxPrefillChunk] (check_prefill_chunk).
  virtual void set_prefill_chunk(int64_t tokens) = 0;
  virtual int64_t prefill_chunk() const = 0;
  virtual int64_t length(int64_t slot) const = 0;
  // A slot's caches as fp32 on the host (tests: prefill against decode): with kda, every KDA
  // layer's state then tails; else every MLA layer's rows [0, length(slot)).
  virtual std::vector<float> read_slot(int64_t slot, bool kda) const = 0;
  // Median of `reps` timed steps (CUDA events, one captured graph, after `warmup` steps) of
  // slots [0, batch), ms. The lengths advance by warmup + reps.
  virtual double time_steps_ms(int64_t batch, int warmup, int reps) = 0;
  // The parts of a step (step_breakdown.h), ms summed over layers: `reps` un-graphed steps of
  // slots [0, batch) after one untimed, CUDA events between the parts, the mean. The lengths
  // advance by reps + 1.
  virtual StepPartMs time_step_parts(int64_t batch, int reps) = 0;
  // Nodes (kernel launches and copies) of the last captured step graph; 0 before any.
  virtual int64_t graph_nodes() const = 0;
  // Distinct experts the last step chose, summed over MoE layers.
  virtual int64_t distinct_experts_last_step() = 0;
  // Device-to-device copy bandwidth (bytes read + written per second), measured now.
  virtual double copy_bandwidth() = 0;
  virtual int64_t free_device_bytes() const = 0;
  // The most slots of `max_tokens` tokens whose caches and step buffers fit in the free device
  // memory now (after this engine's weights; any caches allocated now count as free).
  virtual int64_t max_slots(int64_t max_tokens) const = 0;
  virtual std::string device_name() const = 0;
};

// The simulator's prefill chunk (inference/simulator.h SimOptions::prefill_chunk).
inline constexpr int64_t kDefaultPrefillChunk = 16384;
inline constexpr int64_t kMaxPrefillChunk = 65536;

// [begin, end) of each chunk of a prefill of `tokens` tokens in chunks of `chunk` (the last one
// shorter); none for 0 tokens. UserError for a chunk outside [1, kMaxPrefillChunk].
std::vector<std::pair<int64_t, int64_t>> prefill_chunks(int64_t tokens, int64_t chunk);
void check_prefill_chunk(int64_t chunk);
// The prefill's refusals, one line each: no caches, a slot out of range, no tokens, an id
// outside [0, vocab), more tokens than the slot has room for.
void check_prefill(const CacheLayout& caches, int64_t slot, int64_t length,
                   const std::vector<int32_t>& tokens, int64_t vocab);

using EngineFactory = std::function<std::unique_ptr<DecodeEngine>(const WeightLayout&)>;
// Called by the CUDA library's registrar.
void register_engine_factory(EngineFactory f);
bool engine_available();
// Allocates the arena (zeroed). Throws UserError when no engine is built in, no device is
// present or the weights do not fit.
std::unique_ptr<DecodeEngine> make_decode_engine(const WeightLayout& layout);

}  // namespace kimi::inference::engine
