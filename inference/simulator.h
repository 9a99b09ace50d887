// The roofline simulator of Kimi-Linear inference on one GPU: each layer of a step takes
// max(bytes / bandwidth, FLOPs / its compute ceiling) plus a fixed launch cost; a decode step
// serves every sequence of the batch once (TPOT = step time, throughput = batch / step time);
// prefill is chunked. The same numbers for the hybrid and its all-MLA twin, at the largest batch
// that fits beside the bf16 weights. The engine's `bench-infer` CSV is joined on
// (model, context, batch) to put the measurement and the relative error beside each prediction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "inference/engine_model.h"
#include "inference/gpu_profile.h"
#include "inference/layer_costs.h"
#include "models/kimi_linear_config.h"

namespace kimi::inference {

enum class ModelKind { kHybrid, kAllMla };
// "hybrid" and "all-mla", as in the CSVs.
const char* model_name(ModelKind m);
// The inverse; UserError naming `where` for anything else.
ModelKind parse_model_name(const std::string& s, const std::string& where);
// The config of `m` built from the hybrid's (the twin for kAllMla).
models::KimiLinearConfig model_config(const models::KimiLinearConfig& hybrid, ModelKind m);

enum class Phase { kDecode, kPrefill };

// How a decode step's time is modelled: the roofline of the GPU's ceilings, or the engine model
// (engine_model.h) of the CUDA engine's measured kernels. Prefill stays the roofline's.
enum class TimeModel { kRoofline, kEngine };
// "roofline" or "engine"; anything else is one UserError naming --model.
TimeModel parse_time_model(const std::string& s);
const char* time_model_name(TimeModel m);

struct SimOptions {
  Dtypes dtypes;
  int64_t prefill_chunk = 16384;  // tokens per prefill chunk (one sequence)
  // Set: decode TPOT by the engine model with this profile; unset: by the roofline.
  std::optional<EngineProfile> engine;
};

// One sublayer's time: max(memory, compute) + launch. KDA's recurrence runs at the chunk
// kernels' rate in prefill and at the fp32 rate in decode.
double layer_seconds(const Work& w, const GpuProfile& g, Phase phase);
double step_seconds(const std::vector<LayerCost>& layers, const GpuProfile& g, Phase phase);

// Every parameter resident in the weight dtype.
double weights_bytes(const models::KimiLinearConfig& c, const Dtypes& dt);
// models::cache_sizes(c, state, latent).hybrid(context): the whole cache of one sequence.
int64_t cache_bytes_per_seq(const models::KimiLinearConfig& c, int64_t context, const Dtypes& dt);
// The decode activations one sequence of a batch keeps live: its fp32 logits and four fp32
// vectors of the model's widest per-token activation (residual, normed input, mixer or FFN
// input and output). Under 1 MiB for the 48B; it matters only against short contexts' caches.
int64_t workspace_bytes_per_seq(const models::KimiLinearConfig& c, const Dtypes& dt);
// floor((memory - reserve - weights) / (cache + workspace per sequence)), 0 when nothing fits.
int64_t max_batch(const models::KimiLinearConfig& c, const GpuProfile& g, int64_t context,
                  const Dtypes& dt);
// One sequence of `context` tokens, chunk after chunk.
double prefill_seconds(const models::KimiLinearConfig& c, const GpuProfile& g, int64_t context,
                       const SimOptions& o);

// A measured row of bench-infer's CSV (a missing cell is nullopt).
struct Measured {
  ModelKind model = ModelKind::kHybrid;
  int64_t context = 0, batch = 0;
  std::optional<double> prefill_ms, tpot_ms, tokens_per_s;
  std::optional<int> mla_splits_per_sm;  // bench-infer's column; absent in older CSVs
};

struct Prediction {
  ModelKind model = ModelKind::kHybrid;
  int64_t context = 0, batch = 0, max_batch = 0;
  bool fits = false;  // batch <= max_batch
  double weights_bytes = 0, cache_bytes_per_seq = 0, workspace_bytes_per_seq = 0;
  double bytes_per_step = 0, flops_per_step = 0;
  double mem_floor_ms = 0;  // bytes_per_step at the bandwidth, nothing else
  double prefill_ms = 0;    // one sequence of `context` tokens
  double tpot_ms = 0, tokens_per_s = 0;
  std::string bound;  // "memory" or "compute": which of the two totals is larger
  std::optional<Measured> measured;
};

Prediction predict(const models::KimiLinearConfig& hybrid, ModelKind m, const GpuProfile& g,
                   int64_t context, int64_t batch, const SimOptions& o);

// A --batch entry: a number, or the largest batch that fits (max).
struct BatchSpec {
  int64_t n = 0;
  bool max = false;
};

// Both models x contexts x batches, plus every (model, context, batch) of `measured` with the
// measurement attached; one row per key, sorted by model (hybrid first), context, batch. A
// "max" batch that is 0 (nothing fits) is predicted at batch 1 with fits = false.
std::vector<Prediction> simulate(const models::KimiLinearConfig& hybrid, const GpuProfile& g,
                                 const std::vector<int64_t>& contexts,
                                 const std::vector<BatchSpec>& batches,
                                 const std::vector<Measured>& measured, const SimOptions& o);

// (predicted - measured) / measured.
double relative_error(double predicted, double measured);

}  // namespace kimi::inference
