// The sparse mixture-of-experts block of Kimi Linear and Moonlight (HF modeling_kimi.py
// KimiSparseMoeBlock / KimiMoEGate; DeepSeek-V3's "noaux_tc" routing, as vLLM):
// scores = sigmoid(x W^T) in the router's dtype (f32 or f64), top-k chosen by scores +
// e_score_correction_bias (group-limited when num_groups > 1), weights = the unbiased scores at
// those indices renormalised to sum 1, times routed_scaling_factor. Experts are SwiGLU (w1 gate,
// w3 up, w2 down), plus always-on shared experts.
//
// It trains: the tokens are sorted by expert on the device (moe_sort_by_expert), every expert's
// rows go through one grouped GEMM (core/ops/moe_ops.h), and the results come back through a row
// gather, so no step waits for the host. The correction bias is not trained by gradient: after
// each optimizer step, after_optimizer_step() moves it by bias_update_rate * sign(mean load -
// load of the expert) (DeepSeek-V3's auxiliary-loss-free balancing). An optional load-balance
// loss (aux_loss_coef > 0) adds its gradient during backward without changing the forward.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/nn/layers.h"
#include "core/ops/moe_ops.h"

namespace kimi::models {

struct MoeOptions {
  int64_t d_model = 0, num_experts = 0, top_k = 0, expert_hidden = 0;
  int64_t num_shared = 0;  // shared experts: one SwiGLU of hidden expert_hidden * num_shared
  double routed_scaling_factor = 1.0;
  bool renormalize = true;
  int64_t num_groups = 1, topk_group = 1;
  double bias_update_rate = 0.0;  // u of the bias update; 0 = the bias stays as loaded
  double aux_loss_coef = 0.0;     // alpha of the load-balance loss; 0 = none
  DType dtype = DType::kF32;
  double init_std = 0.02;
};

// Sums per-expert token counts over the ranks of a data-parallel run, in place (every rank
// calls it for every MoE layer, in layer order, after each optimizer step).
using LoadSum = std::function<void(std::vector<double>& counts)>;

// Routing of N tokens, row-major [N, top_k]: chosen expert ids (by decreasing biased score) and
// their weights.
struct Routing {
  int64_t tokens = 0, top_k = 0;
  std::vector<int64_t> expert;
  std::vector<double> weight;
};

// The host reference of the routing rule: scores are sigmoid router outputs [N, E] (row-major);
// bias [E] (the correction bias). Ties go to the lower expert id.
Routing route_tokens(const std::vector<double>& scores, const std::vector<double>& bias,
                     int64_t tokens, const MoeOptions& opt);

// The auxiliary-loss-free update: bias_e += rate * sign(mean load - load_e), loads in tokens (or
// fractions; only their order against the mean matters). A balanced expert keeps its bias.
std::vector<double> balanced_bias(const std::vector<double>& bias, const std::vector<double>& load,
                                  double rate);

class MoeGate : public nn::Module {
 public:
  MoeGate(const MoeOptions& opt, Rng& rng);
  Tensor weight;  // [E, d]
  // [E], zeros at init. A parameter (it is in checkpoints and HF files) that never gets a
  // gradient: routing is a choice, and the optimizer skips tensors without one.
  Tensor e_score_correction_bias;
};

// w2(silu(w1 x) * w3 x), Mixtral / Kimi names.
class MoeExpert : public nn::Module {
 public:
  MoeExpert(int64_t d, int64_t hidden, Rng& rng, const nn::InitOptions& init);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<nn::Linear> w1, w2, w3;
};

// The routed half of SparseMoeBlock::forward in pieces, shared with the expert-parallel block of
// inference/parallel (which runs only its rank's experts on the same routing).
// The router on x2 [N, d]: sigmoid scores [N, E] in the router's dtype, the chosen slots sorted
// by expert, and the slots' weights [N, K] (gathered from the scores, so differentiable in them).
struct RoutedSlots {
  Tensor scores;
  ExpertChoice choice;
  ExpertSort sorted;
  Tensor weight;
};
RoutedSlots route_slots(const Tensor& x2, const MoeGate& gate, const MoeOptions& opt);
// Experts' weights stacked for the grouped GEMMs: gate and up as one w13 [E, 2h, d], down w2
// [E, d, h].
struct StackedExperts {
  Tensor w13, w2;
};
StackedExperts stack_experts(const std::vector<std::shared_ptr<MoeExpert>>& experts);
// SwiGLU experts on rows xs [S, d] grouped by expert (offsets I64 [E+1]) -> [S, d].
Tensor grouped_swiglu(const Tensor& xs, const StackedExperts& w, const Tensor& offsets);
// out[n] = sum_k weight[n, k] * ys[position[n*K + k]]: expert rows (sorted) back to tokens.
Tensor combine_slots(const Tensor& ys, const Tensor& position, const Tensor& weight);

class SparseMoeBlock : public nn::Module {
 public:
  SparseMoeBlock(const MoeOptions& opt, Rng& rng);
  // x [..., d] -> [..., d], differentiable. While gradients are recorded, the routed token counts
  // add up for the next after_optimizer_step().
  Tensor forward(const Tensor& x);
  // The routing of x [N, d], read back to the host (tests, inspection).
  Routing route(const Tensor& x2d) const;
  // Applies the bias update from the loads counted since the last call (if bias_update_rate > 0)
  // and keeps those loads for expert_load(). Call once after each optimizer step. With
  // `sum_over_ranks` the loads are first summed over the ranks (a rank that routed nothing
  // gives zeros), so every rank moves its bias as one process would over the global batch.
  void after_optimizer_step(const LoadSum& sum_over_ranks = nullptr);
  // Per expert, the fraction of routed (token, slot) pairs it received over the forwards of the
  // last optimizer step (the ones counted before the last after_optimizer_step(); before the
  // first, those counted so far). Sums to 1 once anything was routed; empty before.
  std::vector<double> expert_load() const;

  std::vector<std::shared_ptr<MoeExpert>> experts;  // "experts.{e}"
  std::shared_ptr<MoeGate> gate;
  std::shared_ptr<nn::SwiGLU> shared_experts;  // null when num_shared == 0

 private:
  MoeOptions opt_;
  Tensor counts_;                  // F64 [E] on the parameters' device: tokens routed since the
                                   // last after_optimizer_step (undefined before the first)
  std::vector<double> last_load_;  // fractions of the last completed step
};

}  // namespace kimi::models
