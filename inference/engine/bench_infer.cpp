// bench-infer (bench_infer.h): the measurement loop, the floor, the tables and the CSV.
#include "inference/engine/bench_infer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "core/tensor/error.h"
#include "inference/engine/decode_engine.h"
#include "inference/engine/mla_splits.h"
#include "inference/sim_args.h"

namespace kimi::inference::engine {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

}  // namespace

std::vector<ModelKind> parse_bench_models(const std::vector<std::string>& items) {
  std::vector<ModelKind> out;
  for (const std::string& s : items) {
    ModelKind m;
    if (s == "hybrid")
      m = ModelKind::kHybrid;
    else if (s == "mla" || s == "all-mla")
      m = ModelKind::kAllMla;
    else
      throw UserError(fmt::format("--models: '{}' (want hybrid, mla or all-mla)", s));
    if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
  }
  if (out.empty()) throw UserError("--models: empty list");
  return out;
}

std::vector<int64_t> parse_bench_batches(const std::vector<std::string>& items) {
  std::vector<int64_t> out;
  for (const std::string& s : items) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || s.empty() || v < 1 || v > 65536)
      throw UserError(fmt::format("--batch: '{}' (want whole numbers in [1, 65536])", s));
    out.push_back(v);
  }
  if (out.empty()) throw UserError("--batch: empty list");
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int64_t parse_prefill_max(const std::string& item) {
  if (item == "0") return 0;
  try {
    return parse_contexts({item}).at(0);
  } catch (const UserError&) {
    throw UserError(fmt::format(
        "--prefill-max: '{}' (want a length such as 32K or 1M, or 0 for no prefill)", item));
  }
}

int64_t parse_prefill_chunk(const std::string& item) {
  int64_t v = 0;
  try {
    v = parse_contexts({item}).at(0);
  } catch (const UserError&) {
    v = 0;
  }
  if (v < 1 || v > kMaxPrefillChunk)
    throw UserError(fmt::format("--prefill-chunk: '{}' (want a length in [1, {}], e.g. 16K)", item,
                                context_label(kMaxPrefillChunk)));
  return v;
}

std::vector<int32_t> bench_prompt(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int64_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;  // an LCG: cheap, fixed by the seed
    ids[i] = static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab));
  }
  return ids;
}

namespace {

// One sequence of `ctx` tokens prefilled in slot 0 after an untimed chunk; ms, or -1 with the
// reason logged when it does not fit.
double time_prefill(DecodeEngine& e, int64_t ctx, int64_t extra, const BenchInferArgs& a,
                    const std::function<void(const std::string&)>& log) {
  try {
    e.allocate_slots(1, ctx + extra);
    e.set_prefill_chunk(a.prefill_chunk);
    const std::vector<int32_t> ids = bench_prompt(ctx, e.layout().config.vocab_size, a.seed);
    // Warm-up (cuBLAS heuristics, first launches, the prefill buffers): one chunk, then empty.
    e.prefill(0, std::vector<int32_t>(ids.begin(), ids.begin() + std::min(ctx, a.prefill_chunk)),
              nullptr);
    e.reset();
    std::vector<float> logits;
    const auto t0 = std::chrono::steady_clock::now();
    e.prefill(0, ids, &logits);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  } catch (const UserError& err) {
    log(fmt::format("  prefill of {} tokens skipped: {}", context_label(ctx), err.what()));
    return -1;
  }
}

}  // namespace

double floor_ms(int64_t weight_bytes, int64_t cache_bytes, double bytes_per_s) {
  return static_cast<double>(weight_bytes + cache_bytes) / bytes_per_s * 1e3;
}

BenchResult run_bench_infer(const BenchInferArgs& a,
                            const std::function<void(const std::string&)>& log) {
  if (!a.hf_dir.empty() && !a.preset.empty())
    throw UserError("bench-infer: give a preset or HF_DIR, not both");
  if (a.warmup < 1 || a.reps < 1) throw UserError("bench-infer: --warmup and --reps must be >= 1");
  if (a.prefill_max < 0) throw UserError("--prefill-max: must be >= 0");
  check_prefill_chunk(a.prefill_chunk);
  for (int64_t n : a.contexts)
    if (n < 1) throw UserError(fmt::format("--contexts: {} is not a positive length", n));
  const std::string preset = a.hf_dir.empty() && a.preset.empty() ? "kimi-linear-48b" : a.preset;
  const models::KimiLinearConfig full = resolve_model(a.hf_dir, preset);
  const models::KimiLinearConfig hybrid = first_layers(full, a.layers);
  BenchResult r;
  r.source = model_source(a.hf_dir, preset, full, a.layers);
  for (ModelKind kind : a.models) {
    const models::KimiLinearConfig c = model_config(hybrid, kind);
    const WeightLayout layout = make_weight_layout(c);
    std::unique_ptr<DecodeEngine> e = make_decode_engine(layout);
    r.device = e->device_name();
    const auto t0 = std::chrono::steady_clock::now();
    if (a.hf_dir.empty() || kind == ModelKind::kAllMla)
      e->init_random(a.seed);
    else
      e->load_hf(a.hf_dir);
    const double build_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r.copy_bytes_per_s == 0) r.copy_bytes_per_s = e->copy_bandwidth();
    log(
        fmt::format("{}: {:.2f} GiB of bf16 weights on {} ({}, {:.2f} s), copy bandwidth {:.2f} "
                    "TB/s",
                    model_name(kind), layout.total_bytes / kGiB, r.device,
                    kind == ModelKind::kAllMla || a.hf_dir.empty() ? "random, seeded" : a.hf_dir,
                    build_s, r.copy_bytes_per_s / 1e12));
    const int64_t extra = a.warmup + a.reps + 1 + (a.breakdown ? a.reps + 1 : 0);
    for (int64_t ctx : a.contexts) {
      MemoryRow m;
      m.model = kind, m.context = ctx, m.weights_bytes = layout.total_bytes;
      m.cache_per_seq = make_cache_layout(c, 1, ctx).bytes_per_slot();
      m.max_batch = std::min(e->max_slots(ctx + extra), a.max_batch_cap);
      r.memory.push_back(m);
      std::vector<int64_t> batches;
      for (int64_t b : a.batches)
        if (b <= m.max_batch) batches.push_back(b);
      if (a.add_max_batch && m.max_batch > 0 &&
          std::find(batches.begin(), batches.end(), m.max_batch) == batches.end())
        batches.push_back(m.max_batch);
      if (batches.empty())
        log(fmt::format("{} at {}: not even one sequence fits", model_name(kind),
                        context_label(ctx)));
      double prefill_ms = -1;
      if (!batches.empty() && ctx <= a.prefill_max) {
        prefill_ms = time_prefill(*e, ctx, extra, a, log);
        if (prefill_ms > 0)
          log(fmt::format("  {} context {}: prefill {:.2f} ms ({:.0f} tokens/s, chunks of {})",
                          model_name(kind), context_label(ctx), prefill_ms, ctx / prefill_ms * 1e3,
                          context_label(a.prefill_chunk)));
      }
      for (int64_t b : batches) {
        e->allocate_slots(b, ctx + extra);
        e->fill_synthetic(b, ctx, a.seed + 17);
        BenchRow row;
        row.model = kind, row.context = ctx, row.batch = b, row.max_batch = m.max_batch;
        row.prefill_ms = prefill_ms;
        row.tpot_ms = e->time_steps_ms(b, a.warmup, a.reps);
        row.tokens_per_s = b / row.tpot_ms * 1e3;
        row.distinct_experts = e->distinct_experts_last_step();
        row.kernels = e->graph_nodes();
        row.mla_splits_per_sm = mla_splits_per_sm(b, mla_splits_per_sm_from_env());
        row.weight_bytes = active_weight_bytes(layout, row.distinct_experts, b);
        // The timed steps ran at lengths ctx .. ctx + warmup + reps; the middle one stands for all.
        row.cache_bytes = b * e->caches().step_bytes(ctx + a.warmup + a.reps / 2);
        row.floor_ms = floor_ms(row.weight_bytes, row.cache_bytes, r.copy_bytes_per_s);
        log(fmt::format("  {} context {} batch {}: TPOT {:.3f} ms, floor {:.3f} ms ({:.2f}x)",
                        model_name(kind), context_label(ctx), b, row.tpot_ms, row.floor_ms,
                        row.tpot_ms / row.floor_ms));
        if (a.breakdown) {
          row.has_parts = true;
          row.part_ms = e->time_step_parts(b, a.reps);
          row.part_bytes = step_part_bytes(c, b, ctx + a.warmup + a.reps, row.distinct_experts);
          log(breakdown_table(row.part_ms, row.part_bytes, row.tpot_ms, r.copy_bytes_per_s));
        }
        r.rows.push_back(row);
      }
    }
  }
  return r;
}

std::string bench_table(const BenchResult& r) {
  std::string t =
      fmt::format("{:<8} {:>8} {:>6} {:>10} {:>12} {:>10} {:>8} {:>9} {:>9} {:>8} {:>11} {:>12}\n",
                  "model", "context", "batch", "TPOT ms", "tokens/s", "floor ms", "TPOT/fl",
                  "wt GB", "cache GB", "kernels", "prefill ms", "prefill t/s");
  for (const BenchRow& x : r.rows) {
    const bool pre = x.prefill_ms > 0;
    t += fmt::format(
        "{:<8} {:>8} {:>6} {:>10.3f} {:>12.1f} {:>10.3f} {:>8.2f} {:>9.2f} {:>9.2f} {:>8} {:>11} "
        "{:>12}\n",
        model_name(x.model), context_label(x.context), x.batch, x.tpot_ms, x.tokens_per_s,
        x.floor_ms, x.tpot_ms / x.floor_ms, x.weight_bytes / 1e9, x.cache_bytes / 1e9, x.kernels,
        pre ? fmt::format("{:.2f}", x.prefill_ms) : "-",
        pre ? fmt::format("{:.0f}", x.context / x.prefill_ms * 1e3) : "-");
  }
  return t;
}

std::string memory_table(const BenchResult& r) {
  std::string t = fmt::format("{:<8} {:>8} {:>12} {:>16} {:>12}\n", "model", "context",
                              "weights GiB", "cache/seq GiB", "max batch");
  for (const MemoryRow& m : r.memory)
    t += fmt::format("{:<8} {:>8} {:>12.2f} {:>16.4f} {:>12}\n", model_name(m.model),
                     context_label(m.context), m.weights_bytes / kGiB, m.cache_per_seq / kGiB,
                     m.max_batch);
  return t;
}

std::string bench_csv(const BenchResult& r) {
  std::string s = "# bench-infer: decode TPOT on " + r.device + " (" + r.source +
                  "); decode on caches filled with synthetic values up to each context; "
                  "prefill_ms: one sequence of `context` tokens prefilled for real in chunks "
                  "(empty: not measured)\n"
                  "model,context,batch,tpot_ms,tokens_per_s,floor_ms,tpot_over_floor,weight_bytes,"
                  "cache_bytes,distinct_experts,kernels,max_batch,copy_gbs,synthetic_cache,"
                  "prefill_ms,prefill_tokens_per_s,mla_splits_per_sm\n";
  for (const BenchRow& x : r.rows) {
    const bool pre = x.prefill_ms > 0;
    s += fmt::format("{},{},{},{:.4f},{:.2f},{:.4f},{:.3f},{},{},{},{},{},{:.1f},1,{},{},{}\n",
                     model_name(x.model), x.context, x.batch, x.tpot_ms, x.tokens_per_s, x.floor_ms,
                     x.tpot_ms / x.floor_ms, x.weight_bytes, x.cache_bytes, x.distinct_experts,
                     x.kernels, x.max_batch, r.copy_bytes_per_s / 1e9,
                     pre ? fmt::format("{:.4f}", x.prefill_ms) : "",
                     pre ? fmt::format("{:.1f}", x.context / x.prefill_ms * 1e3) : "",
                     x.mla_splits_per_sm > 0 ? fmt::format("{}", x.mla_splits_per_sm) : "");
  }
  return s;
}

std::string breakdown_csv(const BenchResult& r) {
  std::string s =
      "# bench-infer --breakdown on " + r.device + " (" + r.source +
      "): each part of a decode step, un-graphed (CUDA events between parts), ms summed over "
      "layers; bytes the part must read (step_breakdown.h)\n"
      "model,context,batch,part,ms,bytes,gb_per_s,tpot_ms\n";
  for (const BenchRow& x : r.rows) {
    if (!x.has_parts) continue;
    for (int i = 0; i < kStepParts; ++i) {
      if (x.part_ms[i] == 0 && x.part_bytes[i] == 0) continue;
      s += fmt::format(
          "{},{},{},{},{:.4f},{:.0f},{:.1f},{:.4f}\n", model_name(x.model), x.context, x.batch,
          step_part_name(static_cast<StepPart>(i)), x.part_ms[i], x.part_bytes[i],
          x.part_ms[i] > 0 ? x.part_bytes[i] / (x.part_ms[i] * 1e-3) / 1e9 : 0.0, x.tpot_ms);
    }
  }
  return s;
}

}  // namespace kimi::inference::engine
