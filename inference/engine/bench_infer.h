// `kimi-lab bench-infer`: decode TPOT of the engine for the hybrid and its all-MLA twin, at each
// context and batch that fits, against the memory floor measured in the same run:
//   floor = (weight bytes the step reads + cache bytes it reads and writes) / copy bandwidth
// where the weight bytes count every non-expert weight, the lm_head, the embedding rows of the
// batch and each routed expert the step actually chose once (distinct experts, read back after
// the timing), and the copy bandwidth is a 1 GiB device-to-device copy (read + write bytes).
// Decode always runs on caches filled with synthetic values (hash noise) and the lengths set,
// which costs the decode step the same bytes as a real prefix. Prefill is measured apart: for
// each context up to prefill_max, one sequence of that many (synthetic) tokens is prefilled for
// real in chunks of prefill_chunk (DecodeEngine::prefill), after one untimed chunk; its wall
// time (logits copy included) is prefill_ms. Longer contexts report no prefill.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "inference/engine/decode_engine.h"
#include "inference/simulator.h"

namespace kimi::inference::engine {

struct BenchInferArgs {
  std::string hf_dir, preset;  // exactly one; both empty = preset kimi-linear-48b
  std::vector<int64_t> contexts = {4096, 32768, 131072, 524288, 1048576};
  std::vector<int64_t> batches = {1, 4, 16, 64, 256};
  bool add_max_batch = true;  // also the largest batch that fits at each context
  std::vector<ModelKind> models = {ModelKind::kHybrid, ModelKind::kAllMla};
  uint64_t seed = 0;
  int warmup = 3, reps = 10;
  int64_t max_batch_cap = 1024;
  int64_t layers = 0;  // > 0: the first `layers` decoder layers only (sim_args.h first_layers)
  int64_t prefill_max = 131072;  // longest context prefilled for real; 0 = none
  int64_t prefill_chunk = kDefaultPrefillChunk;
  // Per row, also time the step's parts un-graphed (DecodeEngine::time_step_parts) and log
  // them beside the bytes each must read (step_breakdown.h).
  bool breakdown = false;
};

// --prefill-max: a length as --contexts spells it (4K, 1M) or 0 (no prefill); UserError
// naming the flag.
int64_t parse_prefill_max(const std::string& item);
// --prefill-chunk: a length in [1, kMaxPrefillChunk] (16K); UserError naming the flag.
int64_t parse_prefill_chunk(const std::string& item);
// Synthetic prompt of n ids in [0, vocab) (the prefill's input; its content does not change
// the cost).
std::vector<int32_t> bench_prompt(int64_t n, int64_t vocab, uint64_t seed);

// "hybrid", "mla" or "all-mla", comma lists already split; UserError naming --models.
std::vector<ModelKind> parse_bench_models(const std::vector<std::string>& items);
// Positive batch sizes; UserError naming --batch.
std::vector<int64_t> parse_bench_batches(const std::vector<std::string>& items);

struct BenchRow {
  ModelKind model = ModelKind::kHybrid;
  int64_t context = 0, batch = 0, max_batch = 0;
  double tpot_ms = 0, tokens_per_s = 0, floor_ms = 0;
  int64_t weight_bytes = 0, cache_bytes = 0;  // read per step
  int64_t distinct_experts = 0;               // summed over MoE layers
  int64_t kernels = 0;                        // nodes of the step's CUDA graph
  int mla_splits_per_sm = 0;                  // the MLA attend's split rule at this batch
  // One sequence of `context` tokens prefilled (the same for every batch of the context);
  // negative = not measured (context > prefill_max, or the prefill did not fit).
  double prefill_ms = -1;
  // With --breakdown: each part's ms (un-graphed, summed over layers) and bytes; else empty.
  bool has_parts = false;
  StepPartMs part_ms{}, part_bytes{};
};

struct MemoryRow {
  ModelKind model = ModelKind::kHybrid;
  int64_t context = 0, weights_bytes = 0, cache_per_seq = 0, max_batch = 0;
};

struct BenchResult {
  std::string device, source;
  double copy_bytes_per_s = 0;
  std::vector<BenchRow> rows;
  std::vector<MemoryRow> memory;
};

// The floor of one step in ms at `bytes_per_s`.
double floor_ms(int64_t weight_bytes, int64_t cache_bytes, double bytes_per_s);

// Runs the whole benchmark on the registered engine; `log` gets one line per row as it goes.
BenchResult run_bench_infer(const BenchInferArgs& a,
                            const std::function<void(const std::string&)>& log);

std::string bench_table(const BenchResult& r);
std::string memory_table(const BenchResult& r);
// One row per (model, context, batch): readable by `simulate --measured` and
// tools/plot_simulator.py.
std::string bench_csv(const BenchResult& r);
// With --breakdown: one row per (model, context, batch, part): ms, bytes, GB/s.
std::string breakdown_csv(const BenchResult& r);

}  // namespace kimi::inference::engine
