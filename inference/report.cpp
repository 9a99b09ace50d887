// Tables, CSVs and the "up to 6x" paragraph of `kimi-lab simulate`.
#include "inference/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace kimi::inference {

using models::KimiLinearConfig;

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string opt(const std::optional<double>& v) {
  return v ? fmt::format("{:.6g}", *v) : std::string();
}
std::string err(double predicted, const std::optional<double>& measured) {
  return measured ? fmt::format("{:.4f}", relative_error(predicted, *measured)) : std::string();
}
std::string si(double v, const char* unit) {
  const char* prefix[] = {"", "K", "M", "G", "T", "P", "E"};
  int i = 0;
  while (v >= 1000 && i < 6) v /= 1000, ++i;
  return fmt::format("{:.3g} {}{}", v, prefix[i], unit);
}
const char* phase_name(Phase p) { return p == Phase::kDecode ? "decode" : "prefill"; }

}  // namespace

std::vector<LayerRow> layer_breakdown(const KimiLinearConfig& hybrid, ModelKind m,
                                      const GpuProfile& g, int64_t context, const SimOptions& o) {
  const KimiLinearConfig c = model_config(hybrid, m);
  std::vector<LayerRow> out;
  for (const LayerCost& l : decode_step(c, 1, context, o.dtypes)) {
    const double n = static_cast<double>(l.count);
    out.push_back({m, context, Phase::kDecode, l.kind, l.count, n * l.work,
                   1e3 * n * layer_seconds(l.work, g, Phase::kDecode)});
  }
  // Prefill: the sum over the prompt's chunks, per token.
  std::vector<LayerRow> prefill;
  for (int64_t p = 0; p < context; p += o.prefill_chunk) {
    const int64_t t = std::min(o.prefill_chunk, context - p);
    const std::vector<LayerCost> layers = prefill_chunk(c, p, t, p + t == context, o.dtypes);
    if (prefill.empty())
      for (const LayerCost& l : layers)
        prefill.push_back({m, context, Phase::kPrefill, l.kind, l.count, {}, 0});
    for (size_t i = 0; i < layers.size(); ++i) {
      const double n = static_cast<double>(layers[i].count);
      prefill[i].per_token += n * layers[i].work;
      prefill[i].ms_per_token += 1e3 * n * layer_seconds(layers[i].work, g, Phase::kPrefill);
    }
  }
  for (LayerRow& r : prefill) {
    r.per_token = (1.0 / static_cast<double>(context)) * r.per_token;
    r.ms_per_token /= static_cast<double>(context);
    out.push_back(r);
  }
  return out;
}

std::string predictions_csv(const std::vector<Prediction>& rows) {
  std::string s =
      "model,context,batch,max_batch,fits,weights_bytes,cache_bytes_per_seq,"
      "workspace_bytes_per_seq,bytes_per_step,"
      "flops_per_step,mem_floor_ms,prefill_ms,tpot_ms,tokens_per_s,bound,measured_prefill_ms,"
      "prefill_rel_err,measured_tpot_ms,tpot_rel_err,measured_tokens_per_s,tokens_per_s_rel_err\n";
  for (const Prediction& p : rows) {
    const Measured m = p.measured.value_or(Measured{});
    s += fmt::format(
        "{},{},{},{},{},{:.0f},{:.0f},{:.0f},{:.0f},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{},",
        model_name(p.model), p.context, p.batch, p.max_batch, p.fits ? 1 : 0, p.weights_bytes,
        p.cache_bytes_per_seq, p.workspace_bytes_per_seq, p.bytes_per_step, p.flops_per_step,
        p.mem_floor_ms, p.prefill_ms, p.tpot_ms, p.tokens_per_s, p.bound);
    s += fmt::format("{},{},{},{},{},{}\n", opt(m.prefill_ms), err(p.prefill_ms, m.prefill_ms),
                     opt(m.tpot_ms), err(p.tpot_ms, m.tpot_ms), opt(m.tokens_per_s),
                     err(p.tokens_per_s, m.tokens_per_s));
  }
  return s;
}

std::string layers_csv(const std::vector<LayerRow>& rows) {
  std::string s =
      "model,context,phase,layer,count,weight_bytes_per_token,cache_bytes_per_token,"
      "other_bytes_per_token,gemm_flops_per_token,attn_flops_per_token,recur_flops_per_token,"
      "ms_per_token\n";
  for (const LayerRow& r : rows)
    s += fmt::format("{},{},{},{},{},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g}\n",
                     model_name(r.model), r.context, phase_name(r.phase), r.kind, r.count,
                     r.per_token.weight_bytes, r.per_token.cache_bytes, r.per_token.other_bytes,
                     r.per_token.gemm_flops, r.per_token.attn_flops, r.per_token.recur_flops,
                     r.ms_per_token);
  return s;
}

std::string predictions_table(const std::vector<Prediction>& rows) {
  bool measured = false;
  for (const Prediction& p : rows) measured |= p.measured && p.measured->tpot_ms;
  std::string s = fmt::format("{:<8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10}",
                              "model", "context", "batch", "max", "cache/seq", "GB/step",
                              "floor ms", "TPOT ms", "tok/s", "prefill s");
  if (measured) s += fmt::format(" {:>10} {:>8}", "meas TPOT", "error");
  s += "\n";
  for (const Prediction& p : rows) {
    s += fmt::format(
        "{:<8} {:>8} {:>6} {:>6} {:>6.2f} GiB {:>10.2f} {:>9.3f} {:>9.3f} {:>10.1f} "
        "{:>10.2f}",
        model_name(p.model), p.context, p.batch, p.max_batch, p.cache_bytes_per_seq / kGiB,
        p.bytes_per_step / 1e9, p.mem_floor_ms, p.tpot_ms, p.tokens_per_s, p.prefill_ms / 1e3);
    if (measured && p.measured && p.measured->tpot_ms)
      s += fmt::format(" {:>10.3f} {:>+7.1f}%", *p.measured->tpot_ms,
                       100 * relative_error(p.tpot_ms, *p.measured->tpot_ms));
    if (!p.fits) s += "  (does not fit)";
    s += "\n";
  }
  return s;
}

std::string layers_table(const std::vector<LayerRow>& rows) {
  std::string s = fmt::format("{:<8} {:>8} {:<8} {:<11} {:>3} {:>11} {:>11} {:>11} {:>11} {:>9}\n",
                              "model", "context", "phase", "layer", "n", "weights/tok", "cache/tok",
                              "other/tok", "FLOPs/tok", "ms/tok");
  for (const LayerRow& r : rows)
    s +=
        fmt::format("{:<8} {:>8} {:<8} {:<11} {:>3} {:>11} {:>11} {:>11} {:>11} {:>9.4f}\n",
                    model_name(r.model), r.context, phase_name(r.phase), r.kind, r.count,
                    si(r.per_token.weight_bytes, "B"), si(r.per_token.cache_bytes, "B"),
                    si(r.per_token.other_bytes, "B"), si(r.per_token.flops(), "F"), r.ms_per_token);
  return s;
}

std::vector<ContextRatio> throughput_ratios(const KimiLinearConfig& hybrid, const GpuProfile& g,
                                            const std::vector<int64_t>& contexts,
                                            const SimOptions& o) {
  const KimiLinearConfig mla = model_config(hybrid, ModelKind::kAllMla);
  std::vector<ContextRatio> out;
  for (int64_t n : contexts) {
    ContextRatio r;
    r.context = n;
    r.cache_ratio = static_cast<double>(cache_bytes_per_seq(hybrid, n, o.dtypes)) /
                    static_cast<double>(cache_bytes_per_seq(mla, n, o.dtypes));
    r.batch_hybrid = max_batch(hybrid, g, n, o.dtypes);
    r.batch_mla = max_batch(mla, g, n, o.dtypes);
    r.ratio_b1 = predict(hybrid, ModelKind::kAllMla, g, n, 1, o).tpot_ms /
                 predict(hybrid, ModelKind::kHybrid, g, n, 1, o).tpot_ms;
    if (r.batch_hybrid > 0 && r.batch_mla > 0) {
      r.tokens_per_s_hybrid =
          predict(hybrid, ModelKind::kHybrid, g, n, r.batch_hybrid, o).tokens_per_s;
      r.tokens_per_s_mla = predict(hybrid, ModelKind::kAllMla, g, n, r.batch_mla, o).tokens_per_s;
      r.ratio_max = r.tokens_per_s_hybrid / r.tokens_per_s_mla;
    }
    out.push_back(r);
  }
  return out;
}

std::string ratios_table(const std::vector<ContextRatio>& rows) {
  std::string s = fmt::format("{:>8} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10} {:>10}\n", "context",
                              "cache h/m", "batch h", "batch m", "tok/s h", "tok/s m", "ratio max",
                              "ratio B=1");
  for (const ContextRatio& r : rows) {
    const bool both = r.ratio_max > 0;
    s += fmt::format("{:>8} {:>9.1f}% {:>10} {:>10} {:>12} {:>12} {:>10} {:>9.2f}x\n", r.context,
                     100 * r.cache_ratio, r.batch_hybrid, r.batch_mla,
                     both ? fmt::format("{:.1f}", r.tokens_per_s_hybrid) : "-",
                     both ? fmt::format("{:.1f}", r.tokens_per_s_mla) : "-",
                     both ? fmt::format("{:.2f}x", r.ratio_max) : "-", r.ratio_b1);
  }
  return s;
}

std::string ratios_csv(const std::vector<ContextRatio>& rows) {
  std::string s =
      "context,cache_ratio,max_batch_hybrid,max_batch_all_mla,tokens_per_s_hybrid,"
      "tokens_per_s_all_mla,throughput_ratio_max_batch,tpot_ratio_batch1\n";
  for (const ContextRatio& r : rows) {
    const bool both = r.ratio_max > 0;
    s += fmt::format("{},{:.6f},{},{},{},{},{},{:.6g}\n", r.context, r.cache_ratio, r.batch_hybrid,
                     r.batch_mla, both ? fmt::format("{:.6g}", r.tokens_per_s_hybrid) : "",
                     both ? fmt::format("{:.6g}", r.tokens_per_s_mla) : "",
                     both ? fmt::format("{:.6g}", r.ratio_max) : "", r.ratio_b1);
  }
  return s;
}

std::string explain_speedup(const KimiLinearConfig& hybrid, const GpuProfile& g, int64_t context,
                            const SimOptions& o) {
  const KimiLinearConfig mla = model_config(hybrid, ModelKind::kAllMla);
  const int64_t bh = max_batch(hybrid, g, context, o.dtypes);
  const int64_t bm = max_batch(mla, g, context, o.dtypes);
  const models::CacheSizes sizes = models::cache_sizes(hybrid, o.dtypes.state, o.dtypes.latent);
  const double ch = cache_bytes_per_seq(hybrid, context, o.dtypes) / kGiB;
  const double cm = cache_bytes_per_seq(mla, context, o.dtypes) / kGiB;
  const double fixed_mib =
      static_cast<double>(sizes.num_kda * (sizes.kda_state_per_layer + sizes.kda_conv_per_layer)) /
      (1024.0 * 1024.0);
  std::string s = fmt::format(
      "Where the paper's \"up to 6x\" comes from ({} tokens, {}). 1. Cache per sequence: {:.2f} "
      "GiB for the all-MLA twin, {:.2f} GiB for the hybrid ({:.1f}% of it), because only {} of "
      "the hybrid's {} layers (MLA) keep a cache that grows with the context; its {} KDA layers "
      "keep a fixed {:.1f} MiB of fp32 state whatever the length. 2. Batch that fits: beside the "
      "bf16 weights ({:.1f} GiB) and a {:.0f} GiB workspace, the {:.1f} GiB usable hold {} "
      "all-MLA sequence(s) and {} hybrid ones. ",
      context, g.name, cm, ch, 100 * ch / cm, sizes.num_mla, hybrid.num_hidden_layers,
      sizes.num_kda, fixed_mib, weights_bytes(hybrid, o.dtypes) / kGiB, g.reserve_bytes / kGiB,
      g.memory_bytes / kGiB, bm, bh);
  if (bm < 1 || bh < 1)
    return s + "The comparison at the largest batch needs both models to fit at this length.\n";
  const Prediction ph = predict(hybrid, ModelKind::kHybrid, g, context, bh, o);
  const Prediction pm = predict(hybrid, ModelKind::kAllMla, g, context, bm, o);
  const Prediction ph1 = predict(hybrid, ModelKind::kHybrid, g, context, 1, o);
  const Prediction pm1 = predict(hybrid, ModelKind::kAllMla, g, context, 1, o);
  const double per_tok_h = ph.bytes_per_step / bh / 1e9, per_tok_m = pm.bytes_per_step / bm / 1e9;
  // The hybrid's floor per token once its batch amortises the weights away: its cache traffic.
  const double cache_tok_h = total(decode_step(hybrid, 1, context, o.dtypes)).cache_bytes / 1e9;
  const double ratio = ph.tokens_per_s / pm.tokens_per_s;
  s += fmt::format(
      "3. Bytes per step amortised: a decode step is memory-bound; it reads the weights its "
      "tokens route to once for the whole batch and every sequence's cache, so per generated "
      "token all-MLA at B={} moves {:.1f} GB and the hybrid at B={} {:.1f} GB. Predicted: "
      "all-MLA {:.2f} ms per step ({:.0f} tokens/s), hybrid {:.2f} ms per step ({:.0f} tokens/s): "
      "this GPU gives {:.2f}x the decoding throughput by this model, against {:.2f}x at batch 1 "
      "({:.2f} vs {:.2f} ms TPOT). With memory for any batch the hybrid's weights would amortise "
      "away and the ratio would approach {:.1f} / {:.1f} GB = {:.1f}x (an all-MLA token's bytes "
      "over the hybrid's cache traffic per token), the most that bytes alone can give at one "
      "bandwidth. The paper's 6.3x at 1M (Figure 1b: 1.84 vs 11.48 ms TPOT, each model at the "
      "batch its memory allows) is beyond that: its all-MLA time moves this model's {:.1f} GB "
      "at {:.1f} TB/s, its hybrid's at least {:.1f} GB at {:.1f} TB/s, so on the paper's "
      "hardware (not named) MLA's long-context decode ran further below the memory ceiling than "
      "the hybrid's; the simulator assumes both reach the same copy bandwidth ({:.2f} TB/s).\n",
      bm, per_tok_m, bh, per_tok_h, pm.tpot_ms, pm.tokens_per_s, ph.tpot_ms, ph.tokens_per_s, ratio,
      pm1.tpot_ms / ph1.tpot_ms, ph1.tpot_ms, pm1.tpot_ms, per_tok_m, cache_tok_h,
      per_tok_m / cache_tok_h, per_tok_m, per_tok_m / 11.48e-3 / 1e3, cache_tok_h,
      cache_tok_h / 1.84e-3 / 1e3, g.bandwidth / 1e12);
  return s;
}

std::string engine_parts_csv(const models::KimiLinearConfig& hybrid,
                             const std::vector<Prediction>& rows, const EngineProfile& e) {
  std::string s = "model,context,batch,part,ms,bytes,gb_per_s,tpot_ms\n";
  for (const Prediction& p : rows) {
    const EngineStep st = engine_step(model_config(hybrid, p.model), e, p.batch, p.context);
    for (int i = 0; i < engine::kStepParts; ++i) {
      if (st.seconds[i] == 0) continue;  // a part the model has not (KDA in all-MLA)
      s += fmt::format("{},{},{},{},{:.4f},{:.0f},{:.1f},{:.4f}\n", model_name(p.model), p.context,
                       p.batch, engine::step_part_name(static_cast<engine::StepPart>(i)),
                       1e3 * st.seconds[i], st.bytes[i], st.bytes[i] / st.seconds[i] / 1e9,
                       1e3 * st.total_s());
    }
  }
  return s;
}

std::string fit_summary(const std::vector<Prediction>& rows, double tolerance) {
  int n = 0, within = 0;
  std::string misses;
  for (const Prediction& p : rows) {
    if (!p.measured || !p.measured->tpot_ms) continue;
    ++n;
    const double err = relative_error(p.tpot_ms, *p.measured->tpot_ms);
    if (std::abs(err) <= tolerance) {
      ++within;
    } else {
      misses += fmt::format("  {} {} B={}: {:+.1f}%\n", model_name(p.model), p.context, p.batch,
                            100 * err);
    }
  }
  if (n == 0) return {};
  return fmt::format("{} of {} measured TPOTs within {:.0f}%{}\n{}", within, n, 100 * tolerance,
                     within == n ? "" : "; outside:", misses);
}

}  // namespace kimi::inference
