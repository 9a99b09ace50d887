// The roofline time model over layer_costs' bytes and FLOPs, the memory budget, and the grid
// of predictions with measurements joined. Model and sources: notes/simulator.md.
#include "inference/simulator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "core/tensor/error.h"

namespace kimi::inference {

using models::KimiLinearConfig;

const char* model_name(ModelKind m) { return m == ModelKind::kHybrid ? "hybrid" : "all-mla"; }

ModelKind parse_model_name(const std::string& s, const std::string& where) {
  if (s == "hybrid") return ModelKind::kHybrid;
  if (s == "all-mla") return ModelKind::kAllMla;
  throw UserError(fmt::format("{}: model '{}' is neither 'hybrid' nor 'all-mla'", where, s));
}

TimeModel parse_time_model(const std::string& s) {
  if (s == "roofline") return TimeModel::kRoofline;
  if (s == "engine") return TimeModel::kEngine;
  throw UserError(fmt::format("--model {}: unknown time model (known: roofline, engine)", s));
}

const char* time_model_name(TimeModel m) {
  return m == TimeModel::kRoofline ? "roofline" : "engine";
}

KimiLinearConfig model_config(const KimiLinearConfig& hybrid, ModelKind m) {
  return m == ModelKind::kHybrid ? hybrid : models::all_mla_twin(hybrid);
}

double layer_seconds(const Work& w, const GpuProfile& g, Phase phase) {
  const double memory = w.bytes() / g.bandwidth;
  const double recur_rate = phase == Phase::kDecode ? g.fp32_flops : g.kda_chunk_flops;
  const double compute =
      w.gemm_flops / g.gemm_flops + w.attn_flops / g.attention_flops + w.recur_flops / recur_rate;
  return std::max(memory, compute) + g.launch_s_per_layer;
}

double step_seconds(const std::vector<LayerCost>& layers, const GpuProfile& g, Phase phase) {
  double s = 0;
  for (const LayerCost& l : layers)
    s += static_cast<double>(l.count) * layer_seconds(l.work, g, phase);
  return s;
}

double weights_bytes(const KimiLinearConfig& c, const Dtypes& dt) {
  return static_cast<double>(models::parameter_count(c).total) * static_cast<double>(dt.weight);
}

int64_t cache_bytes_per_seq(const KimiLinearConfig& c, int64_t context, const Dtypes& dt) {
  return models::cache_sizes(c, dt.state, dt.latent).hybrid(context);
}

int64_t workspace_bytes_per_seq(const KimiLinearConfig& c, const Dtypes& dt) {
  const int64_t widest =
      std::max({c.hidden_size, c.kda_num_heads * c.kda_head_dim,
                c.num_attention_heads * (c.kv_lora_rank + c.qk_rope_head_dim), c.intermediate_size,
                (c.num_experts_per_token + c.num_shared_experts) * c.moe_intermediate_size});
  return c.vocab_size * dt.logits + 4 * widest * 4;
}

int64_t max_batch(const KimiLinearConfig& c, const GpuProfile& g, int64_t context,
                  const Dtypes& dt) {
  const double free = g.memory_bytes - g.reserve_bytes - weights_bytes(c, dt);
  if (free <= 0) return 0;
  const int64_t per_seq = cache_bytes_per_seq(c, context, dt) + workspace_bytes_per_seq(c, dt);
  return static_cast<int64_t>(std::floor(free / static_cast<double>(per_seq)));
}

double prefill_seconds(const KimiLinearConfig& c, const GpuProfile& g, int64_t context,
                       const SimOptions& o) {
  KIMI_CHECK(o.prefill_chunk > 0, "prefill chunk {} must be positive", o.prefill_chunk);
  double s = 0;
  for (int64_t p = 0; p < context; p += o.prefill_chunk) {
    const int64_t t = std::min(o.prefill_chunk, context - p);
    s += step_seconds(prefill_chunk(c, p, t, p + t == context, o.dtypes), g, Phase::kPrefill);
  }
  return s;
}

Prediction predict(const KimiLinearConfig& hybrid, ModelKind m, const GpuProfile& g,
                   int64_t context, int64_t batch, const SimOptions& o) {
  if (context <= 0)
    throw UserError(fmt::format("context {}: must be a positive number of tokens", context));
  if (batch <= 0) throw UserError(fmt::format("batch {}: must be positive", batch));
  const KimiLinearConfig c = model_config(hybrid, m);
  Prediction p;
  p.model = m, p.context = context, p.batch = batch;
  p.max_batch = max_batch(c, g, context, o.dtypes);
  p.fits = batch <= p.max_batch;
  p.weights_bytes = weights_bytes(c, o.dtypes);
  p.cache_bytes_per_seq = static_cast<double>(cache_bytes_per_seq(c, context, o.dtypes));
  p.workspace_bytes_per_seq = static_cast<double>(workspace_bytes_per_seq(c, o.dtypes));
  const std::vector<LayerCost> step = decode_step(c, batch, context, o.dtypes);
  const Work w = total(step);
  p.bytes_per_step = w.bytes();
  p.flops_per_step = w.flops();
  p.mem_floor_ms = 1e3 * w.bytes() / g.bandwidth;
  const double compute_s =
      w.gemm_flops / g.gemm_flops + w.attn_flops / g.attention_flops + w.recur_flops / g.fp32_flops;
  p.bound = compute_s > w.bytes() / g.bandwidth ? "compute" : "memory";
  const double s = o.engine ? engine_step(c, *o.engine, batch, context).total_s()
                            : step_seconds(step, g, Phase::kDecode);
  p.tpot_ms = 1e3 * s;
  p.tokens_per_s = static_cast<double>(batch) / s;
  p.prefill_ms = 1e3 * prefill_seconds(c, g, context, o);
  return p;
}

double relative_error(double predicted, double measured) {
  return (predicted - measured) / measured;
}

std::vector<Prediction> simulate(const KimiLinearConfig& hybrid, const GpuProfile& g,
                                 const std::vector<int64_t>& contexts,
                                 const std::vector<BatchSpec>& batches,
                                 const std::vector<Measured>& measured, const SimOptions& o) {
  using Key = std::tuple<int, int64_t, int64_t>;  // model, context, batch
  std::map<Key, const Measured*> keys;
  for (ModelKind m : {ModelKind::kHybrid, ModelKind::kAllMla}) {
    const KimiLinearConfig c = model_config(hybrid, m);
    for (int64_t n : contexts) {
      if (n <= 0)
        throw UserError(fmt::format("--contexts: {} is not a positive number of tokens", n));
      for (const BatchSpec& b : batches) {
        if (!b.max && b.n <= 0)
          throw UserError(fmt::format("--batch: {} is not a positive batch size", b.n));
        const int64_t batch = b.max ? std::max<int64_t>(1, max_batch(c, g, n, o.dtypes)) : b.n;
        keys.emplace(Key{static_cast<int>(m), n, batch}, nullptr);
      }
    }
  }
  for (const Measured& r : measured) {
    const Measured*& slot = keys[Key{static_cast<int>(r.model), r.context, r.batch}];
    if (slot)
      throw UserError(fmt::format("measured rows: ({}, context {}, batch {}) appears twice",
                                  model_name(r.model), r.context, r.batch));
    slot = &r;
  }

  std::vector<Prediction> out;
  for (const auto& [key, meas] : keys) {
    const auto [m, n, batch] = key;
    Prediction p = predict(hybrid, static_cast<ModelKind>(m), g, n, batch, o);
    if (meas) p.measured = *meas;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace kimi::inference
