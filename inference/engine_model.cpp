// The engine model's arithmetic and the h200 engine profile. Every number of the profile comes
// from a named calibration row (tools/calibrate_engine_model.py derives them, nothing at run
// time reads a measurement): the hybrid's bench-infer --breakdown at context 4K for batches 1,
// 8, 64 and 639 (results/bench_infer_h200/bench_breakdown.csv) and two rows of the MLA attend
// microbenchmark (notes/s14/mla_bench.log). The other 20 measured rows only test it.
#include "inference/engine_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/tensor/error.h"
#include "inference/engine/mla_splits.h"
#include "inference/layer_costs.h"
#include "inference/simulator.h"

namespace kimi::inference {
namespace {

using engine::StepPart;
constexpr int at(StepPart p) { return static_cast<int>(p); }

// The dense matrix-product parts: GEMV at small batches, tensor-core GEMM above.
constexpr StepPart kDense[] = {StepPart::kKdaProj, StepPart::kKdaOut, StepPart::kMlaProj,
                               StepPart::kMlaOut,  StepPart::kFfn,    StepPart::kHead};

EngineProfile h200_engine() {
  EngineProfile e;
  e.gpu = "h200";
  e.gemv_max_batch = 8;
  e.sms = 132;
  e.gemv_bw = 2.874e12;
  e.gemv_kernel_s = 7.06e-6;
  e.gemv_alpha = 0.246;
  // q k v f_a g_a b then f_b g_b; gate_up then down (shared expert or dense MLP).
  e.gemv_kernels[at(StepPart::kKdaProj)] = 2;
  e.gemv_kernels[at(StepPart::kKdaOut)] = 1;
  e.gemv_kernels[at(StepPart::kMlaProj)] = 1;
  e.gemv_kernels[at(StepPart::kMlaOut)] = 1;
  e.gemv_kernels[at(StepPart::kFfn)] = 2;
  e.gemv_kernels[at(StepPart::kHead)] = 0;  // the head sets gemv_bw: its latency is inside it
  e.tc_bw = 4.007e12;
  e.tc_layer_s[at(StepPart::kKdaProj)] = 24.3e-6;
  e.tc_layer_s[at(StepPart::kKdaOut)] = 9.67e-6;
  e.tc_layer_s[at(StepPart::kMlaProj)] = 6.61e-6;
  e.tc_layer_s[at(StepPart::kMlaOut)] = 8.42e-6;
  e.tc_layer_s[at(StepPart::kFfn)] = 15.8e-6;
  e.tc_layer_s[at(StepPart::kHead)] = 0;
  e.tc_rate[at(StepPart::kKdaProj)] = 74.8e12;
  e.tc_rate[at(StepPart::kKdaOut)] = 739e12;
  e.tc_rate[at(StepPart::kMlaProj)] = 695e12;
  e.tc_rate[at(StepPart::kMlaOut)] = 829e12;
  e.tc_rate[at(StepPart::kFfn)] = 590e12;
  e.tc_rate[at(StepPart::kHead)] = 725e12;
  e.kda_update_layer_s = 38.6e-6;
  e.kda_update_bw = 1.432e12;
  e.attend_bw = 1.729e12;
  e.attend_split_s = 0.925e-6;
  e.attend_rest_s = 0.96e-6;
  e.attend_step_s = 9.05e-6;
  e.attend_layer_s = 103.5e-6;
  e.attend_seq_s = 1.34e-6;
  e.route_s = 34.8e-6;
  e.route_step_s = 6.63e-6;
  e.route_seq_s = 0.336e-6;
  e.experts_gemv_bw = 2.400e12;
  e.experts_tc_bw = 3.450e12;
  e.experts_layer_s = 27.2e-6;
  e.experts_tc_rate = 58.4e12;
  e.norm_s = 9.62e-6;
  e.embed_s = 10.3e-6;
  e.graph_gain_layer_s = 37.1e-6;
  const std::string bd = "breakdown hybrid 4K";  // results/bench_infer_h200/bench_breakdown.csv
  e.sources = {
      "engine model: calibrated on the hybrid's bench-infer --breakdown at 4K, B = 1, 8, 64, 639 "
      "(results/bench_infer_h200/bench_breakdown.csv) and the MLA attend microbenchmark "
      "(notes/s14/mla_bench.log), by tools/calibrate_engine_model.py; no other row",
      "GEMV (B <= 8) 2.87 TB/s: lm_head at " + bd + " B=1 (755 MB in 0.263 ms, one kernel)",
      "GEMV kernel 7.06 us: the other dense parts at " + bd +
          " B=1 less their bytes at 2.87 TB/s, over their 2/1/1/1/2 kernels per layer",
      "GEMV alpha 0.246: the dense parts' sum at " + bd +
          " B=8 over B=1 is 1 + 7 alpha (the kernel re-streams weights per sequence)",
      "TC (B > 8) 4.01 TB/s: lm_head at " + bd + " B=64 (797 MB in 0.199 ms)",
      "TC latency per layer 24.3/9.7/6.6/8.4/15.8/0 us and rate 75/739/695/829/590/725 TFLOP/s "
      "(kda.proj/kda.o_proj/mla.proj/mla.o_proj/ffn/head; 2 FLOPs per weight and sequence): "
      "kda.proj compute-bound through " +
          bd +
          " B=64 and B=639; the others memory-bound at "
          "B=64 (latency = time less bytes at 4.01 TB/s) and compute-bound at B=639 (rate)",
      "KDA update 38.6 us per layer: " + bd +
          " B=1 (0.772 ms over 20 layers); 1.43 TB/s of state: " + bd +
          " B=639 (57.4 GB in 40.1 ms)",
      "MLA attend 1.73 TB/s of latent + 0.925 us per split: through the microbenchmark's B=1 1M "
      "(264 splits, 1208 MB, 0.943 ms) and B=64 32K (5 splits, 2416 MB, 1.402 ms); splits = "
      "min(ceil(N x 132 / B), ceil(tokens / 32)) with N = 1 up to B=4, else 2 "
      "(KIMI_ENGINE_MLA_SPLITS_PER_SM forces N), as the engine picks them (engine/mla_splits.h)",
      "MLA append + absorb + up-projection per layer, the attend part less the kernel above: "
      "0.96 us + 9.05 us per extra sequence to B=8 (" +
          bd +
          " B=1, B=8); 103.5 us + 1.34 us "
          "per sequence above (" +
          bd + " B=64, B=639)",
      "routing 34.8 us per MoE layer at B=1, +6.63 us per sequence to B=8 (" + bd +
          " B=1, B=8), at least 0.336 us per sequence (" + bd + " B=639)",
      "routed experts GEMV 2.40 TB/s + 27.2 us per MoE layer: " + bd +
          " B=1 and B=8 (2.94 and 21.3 GB); TC 3.45 TB/s: " + bd + " B=64; 58.4 TFLOP/s: " + bd +
          " B=639",
      "norm 9.62 us each (55 a step): " + bd + " B=1 (0.529 ms); embed 10.3 us a step: " + bd +
          " B=1",
      "CUDA graph gain 37.1 us per layer: " + bd +
          " B=1, the parts' un-graphed sum (7.02 ms) less the graphed TPOT (6.02 ms), over 27 "
          "layers",
  };
  return e;
}

}  // namespace

double part_seconds(double bytes, double bandwidth, double flops, double rate, double latency_s) {
  const double compute = rate > 0 ? flops / rate : 0;
  return std::max(bytes / bandwidth, compute) + latency_s;
}

EngineProfile engine_profile(const std::string& gpu) {
  if (gpu == "h200") {
    EngineProfile e = h200_engine();
    e.forced_splits_per_sm = engine::mla_splits_per_sm_from_env();  // as the engine would run
    return e;
  }
  throw UserError(fmt::format(
      "--model engine: no engine profile for GPU '{}' (the engine was measured only on h200); "
      "use --model roofline",
      gpu));
}

double EngineStep::total_s() const {
  double s = 0;
  for (double v : seconds) s += v;
  return s - graph_gain_s;
}

std::string split_rule_mismatch(const std::vector<Measured>& measured, const EngineProfile& e) {
  int differ = 0, recorded = 0;
  std::set<int> theirs;
  for (const Measured& m : measured) {
    if (!m.mla_splits_per_sm) continue;
    ++recorded;
    if (*m.mla_splits_per_sm != engine::mla_splits_per_sm(m.batch, e.forced_splits_per_sm)) {
      ++differ;
      theirs.insert(*m.mla_splits_per_sm);
    }
  }
  if (differ == 0) return "";
  return fmt::format(
      "{} of {} measured rows ran another MLA split count than this engine model assumes "
      "(they ran {} per SM); KIMI_ENGINE_MLA_SPLITS_PER_SM={} compares like with like",
      differ, recorded, fmt::join(theirs, " / "), *theirs.begin());
}

int64_t attend_splits(const EngineProfile& e, int64_t batch, int64_t context) {
  return engine::mla_attend_splits(e.sms, engine::mla_splits_per_sm(batch, e.forced_splits_per_sm),
                                   batch, context + 1);
}

EngineStep engine_step(const models::KimiLinearConfig& c, const EngineProfile& e, int64_t batch,
                       int64_t context) {
  KIMI_CHECK(batch > 0 && context > 0, "engine_step: batch {} and context {} must be positive",
             batch, context);
  double kda = 0, mla = 0, moe = 0;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    (c.is_mla(i) ? mla : kda) += 1;
    moe += c.is_moe(i) ? 1 : 0;
  }
  const double layers = static_cast<double>(c.num_hidden_layers), B = static_cast<double>(batch);
  const double distinct = std::round(experts_touched(c, batch) * moe);
  EngineStep s;
  s.bytes = engine::step_part_bytes(c, batch, context, static_cast<int64_t>(distinct));
  const engine::StepPartMs weights = engine::step_part_bytes(c, 1, 1, 0);
  auto layers_of = [&](StepPart p) {
    switch (p) {
      case StepPart::kKdaProj:
      case StepPart::kKdaOut: return kda;
      case StepPart::kMlaProj:
      case StepPart::kMlaOut: return mla;
      case StepPart::kFfn: return layers;
      default: return 1.0;
    }
  };
  const bool gemv = batch <= e.gemv_max_batch;
  for (StepPart p : kDense) {
    const int i = at(p);
    const double n = layers_of(p);
    if (n == 0) continue;
    double w = weights[i];
    if (p == StepPart::kHead) w -= static_cast<double>(c.vocab_size) * 4;  // B=1 logits
    if (gemv) {
      const double grow = 1 + e.gemv_alpha * (B - 1);
      s.seconds[i] = part_seconds(s.bytes[i] * grow, e.gemv_bw, 0, 0,
                                  grow * n * e.gemv_kernels[i] * e.gemv_kernel_s);
    } else {
      s.seconds[i] = part_seconds(s.bytes[i], e.tc_bw, B * w, e.tc_rate[i], n * e.tc_layer_s[i]);
    }
  }
  s.seconds[at(StepPart::kEmbed)] = e.embed_s;
  s.seconds[at(StepPart::kNorm)] = (2 * layers + 1) * e.norm_s;
  if (kda > 0)
    s.seconds[at(StepPart::kKdaUpdate)] =
        std::max(s.bytes[at(StepPart::kKdaUpdate)] / e.kda_update_bw, kda * e.kda_update_layer_s);
  if (mla > 0) {
    const double cache = B * static_cast<double>(context + 1) *
                         static_cast<double>((c.kv_lora_rank + c.qk_rope_head_dim) * 2);
    const double kernel =
        part_seconds(cache, e.attend_bw, 0, 0,
                     static_cast<double>(attend_splits(e, batch, context)) * e.attend_split_s);
    const double rest =
        gemv ? e.attend_rest_s + e.attend_step_s * (B - 1) : e.attend_layer_s + e.attend_seq_s * B;
    s.seconds[at(StepPart::kMlaAttend)] = mla * (kernel + rest);
  }
  if (moe > 0) {
    const double small =
        e.route_s + e.route_step_s * static_cast<double>(std::min(batch, e.gemv_max_batch) - 1);
    s.seconds[at(StepPart::kRoute)] = moe * std::max(small, B * e.route_seq_s);
    const double expert_bytes = 2.0 * static_cast<double>(layer_params(c).expert);
    const double flops = B * static_cast<double>(c.num_experts_per_token) * moe * expert_bytes;
    s.seconds[at(StepPart::kExperts)] =
        gemv ? part_seconds(s.bytes[at(StepPart::kExperts)], e.experts_gemv_bw, 0, 0,
                            moe * e.experts_layer_s)
             : part_seconds(s.bytes[at(StepPart::kExperts)], e.experts_tc_bw, flops,
                            e.experts_tc_rate, moe * e.experts_layer_s);
  }
  s.graph_gain_s = layers * e.graph_gain_layer_s;
  return s;
}

}  // namespace kimi::inference
