// The engine-level time model of `kimi-lab simulate --model engine`: one decode step of the CUDA
// engine (inference/engine) as the sum of its parts (step_breakdown.h's parts), each costing
// max(bytes / the part's achieved bandwidth, FLOPs / its achieved rate) + a fixed latency per
// kernel or per layer, less the launch gaps the CUDA graph removes. The parameters are measured
// properties of the engine's kernels on one GPU (engine_profile), not ceilings of the GPU: the
// roofline (simulator.h) says what the hardware allows, this says what the engine does.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "inference/engine/step_breakdown.h"
#include "models/kimi_linear_config.h"

namespace kimi::inference {

// A part's time: max(bytes / bandwidth, flops / rate) + latency (seconds). A rate of 0 means no
// compute bound.
double part_seconds(double bytes, double bandwidth, double flops, double rate, double latency_s);

// The engine's kernels on one GPU. GEMV = the batch <= gemv_max_batch path of the dense matrix
// products; TC = the tensor-core GEMM path above it. Per-part arrays are indexed by
// engine::StepPart and used only for the dense parts (projections, shared/dense FFN, head).
struct EngineProfile {
  std::string gpu;
  int64_t gemv_max_batch = 8;
  int64_t sms = 0;  // the engine's attend splits: engine/mla_splits.h
  int forced_splits_per_sm =
      0;                     // KIMI_ENGINE_MLA_SPLITS_PER_SM as the engine reads it; 0: its rule
  double gemv_bw = 0;        // bytes/s of a GEMV kernel's weight stream
  double gemv_kernel_s = 0;  // fixed cost of one GEMV kernel
  double gemv_alpha = 0;     // each extra sequence adds this share of the B=1 time
  std::array<int, engine::kStepParts> gemv_kernels{};  // GEMV kernels per layer of each part
  double tc_bw = 0;  // bytes/s of the tensor-core path's weight stream
  std::array<double, engine::kStepParts> tc_layer_s{};  // fixed cost per layer, TC path
  std::array<double, engine::kStepParts> tc_rate{};     // achieved FLOP/s, TC path
  double kda_update_layer_s = 0;                        // the fused KDA update's floor per layer
  double kda_update_bw = 0;                             // its state bandwidth (read + written)
  double attend_bw = 0;                                 // MLA attend kernel: latent cache bytes/s
  double attend_split_s = 0;  // its fixed cost per split (a partial written, merged)
  // The rest of the attend part (append, kv_b absorb, up-projection) per layer: at B <= 8
  // attend_rest_s + attend_step_s (B - 1), above it attend_layer_s + attend_seq_s B.
  double attend_rest_s = 0, attend_step_s = 0, attend_layer_s = 0, attend_seq_s = 0;
  double route_s = 0;       // router per MoE layer at B=1
  double route_step_s = 0;  // added per extra sequence up to gemv_max_batch
  double route_seq_s = 0;   // per sequence at large batch (the larger bound wins)
  double experts_gemv_bw = 0, experts_tc_bw = 0;  // routed experts' weight stream
  double experts_layer_s = 0;                     // fixed cost per MoE layer
  double experts_tc_rate = 0;                     // achieved FLOP/s above gemv_max_batch
  double norm_s = 0;                              // one RMSNorm
  double embed_s = 0;                             // the embedding gather, per step
  double graph_gain_layer_s = 0;     // launch gaps per layer the captured graph removes
  std::vector<std::string> sources;  // one line per number: value and its calibration row
};

// The engine profile of `gpu`; a UserError naming the GPU when none has been measured there
// (only h200 has one: the H100 cannot hold the 48B's weights, so its engine was never timed).
EngineProfile engine_profile(const std::string& gpu);

// One decode step of `batch` sequences at `context` tokens: each part's seconds and bytes.
struct EngineStep {
  engine::StepPartMs seconds{}, bytes{};
  double graph_gain_s = 0;
  // sum(seconds) - graph_gain_s: the captured step's TPOT.
  double total_s() const;
};
// The routed experts' distinct count is the uniform-routing expectation (experts_touched).
EngineStep engine_step(const models::KimiLinearConfig& c, const EngineProfile& e, int64_t batch,
                       int64_t context);

// The MLA attend kernel's splits per sequence, as the engine picks them.
int64_t attend_splits(const EngineProfile& e, int64_t batch, int64_t context);

struct Measured;  // simulator.h (which includes this header)

// "" when every measured row that records its MLA splits per SM (bench-infer's column) ran the
// rule `e` predicts with; else one line: how many rows differ, and the setting that compares
// like with like (KIMI_ENGINE_MLA_SPLITS_PER_SM).
std::string split_rule_mismatch(const std::vector<Measured>& measured, const EngineProfile& e);

}  // namespace kimi::inference
