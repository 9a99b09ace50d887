// What `kimi-lab simulate` prints and writes: the per-layer-type breakdown (bytes and FLOPs per
// token, decode and prefill), the prediction table and CSV (columns shared with the engine's
// bench-infer CSV: model, context, batch, prefill_ms, tpot_ms, tokens_per_s,
// cache_bytes_per_seq), and the paragraph on where the paper's "up to 6x" comes from.
#pragma once

#include <string>
#include <vector>

#include "inference/simulator.h"

namespace kimi::inference {

// One layer type's work per token: decode at batch 1 (one step), prefill averaged over a
// whole prompt of `context` tokens; ms_per_token = count x the type's time, per token.
struct LayerRow {
  ModelKind model = ModelKind::kHybrid;
  int64_t context = 0;
  Phase phase = Phase::kDecode;
  std::string kind;
  int64_t count = 0;
  Work per_token;  // all `count` layers together
  double ms_per_token = 0;
};
std::vector<LayerRow> layer_breakdown(const models::KimiLinearConfig& hybrid, ModelKind m,
                                      const GpuProfile& g, int64_t context, const SimOptions& o);

std::string predictions_csv(const std::vector<Prediction>& rows);
std::string layers_csv(const std::vector<LayerRow>& rows);
std::string predictions_table(const std::vector<Prediction>& rows);
std::string layers_table(const std::vector<LayerRow>& rows);

// The hybrid against all-MLA at one context: cache per sequence, the largest batches, the
// throughput at those batches (0 when either model does not fit) and their ratio, and the TPOT
// ratio at batch 1 (all-MLA over hybrid).
struct ContextRatio {
  int64_t context = 0;
  double cache_ratio = 0;  // hybrid / all-MLA
  int64_t batch_hybrid = 0, batch_mla = 0;
  double tokens_per_s_hybrid = 0, tokens_per_s_mla = 0;
  double ratio_max = 0, ratio_b1 = 0;
};
std::vector<ContextRatio> throughput_ratios(const models::KimiLinearConfig& hybrid,
                                            const GpuProfile& g,
                                            const std::vector<int64_t>& contexts,
                                            const SimOptions& o);
std::string ratios_table(const std::vector<ContextRatio>& rows);
std::string ratios_csv(const std::vector<ContextRatio>& rows);

// The hybrid against all-MLA at `context`, each at its largest batch: caches, batches, bytes per
// generated token, the throughput ratio on this GPU, and how that relates to the paper's 6.3x.
std::string explain_speedup(const models::KimiLinearConfig& hybrid, const GpuProfile& g,
                            int64_t context, const SimOptions& o);

// The engine model's parts for every row: model,context,batch,part,ms,bytes,gb_per_s,tpot_ms,
// the columns of bench-infer --breakdown's CSV, so the two join part by part.
std::string engine_parts_csv(const models::KimiLinearConfig& hybrid,
                             const std::vector<Prediction>& rows, const EngineProfile& e);
// How many measured TPOTs the prediction meets within `tolerance` (0.15 = 15%), and which do
// not; empty when no row is measured.
std::string fit_summary(const std::vector<Prediction>& rows, double tolerance);

}  // namespace kimi::inference
