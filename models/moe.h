// The sparse mixture-of-experts block of Kimi Linear (HF modeling_kimi.py KimiSparseMoeBlock /
// KimiMoEGate; DeepSeek-V3's "noaux_tc" routing, as vLLM): scores = sigmoid(x W^T) in fp32 (or
// f64), top-k chosen by scores + e_score_correction_bias (group-limited when num_expert_group > 1),
// weights = the unbiased scores at those indices renormalised to sum 1, times
// routed_scaling_factor. Experts are SwiGLU (w1 gate, w3 up, w2 down), plus always-on shared
// experts. Inference only: each expert runs on the rows routed to it (gather / scatter-add).
#pragma once

#include <memory>
#include <vector>

#include "core/nn/layers.h"

namespace kimi::models {

struct MoeOptions {
  int64_t d_model = 0, num_experts = 0, top_k = 0, expert_hidden = 0;
  int64_t num_shared = 0;  // shared experts: one SwiGLU of hidden expert_hidden * num_shared
  double routed_scaling_factor = 1.0;
  bool renormalize = true;
  int64_t num_groups = 1, topk_group = 1;
  DType dtype = DType::kF32;
  double init_std = 0.02;
};

// Routing of N tokens, row-major [N, top_k]: chosen expert ids (by decreasing biased score) and
// their weights.
struct Routing {
  int64_t tokens = 0, top_k = 0;
  std::vector<int64_t> expert;
  std::vector<double> weight;
};

// scores: sigmoid router outputs [N, E] (row-major); bias [E] (the correction bias). Ties go to
// the lower expert id.
Routing route_tokens(const std::vector<double>& scores, const std::vector<double>& bias,
                     int64_t tokens, const MoeOptions& opt);

class MoeGate : public nn::Module {
 public:
  MoeGate(const MoeOptions& opt, Rng& rng);
  Tensor weight;                   // [E, d]
  Tensor e_score_correction_bias;  // [E], zeros at init
};

// w2(silu(w1 x) * w3 x), Mixtral / Kimi names.
class MoeExpert : public nn::Module {
 public:
  MoeExpert(int64_t d, int64_t hidden, Rng& rng, const nn::InitOptions& init);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<nn::Linear> w1, w2, w3;
};

class SparseMoeBlock : public nn::Module {
 public:
  SparseMoeBlock(const MoeOptions& opt, Rng& rng);
  // x [..., d] -> [..., d]. Throws if gradients would be recorded (inference only).
  Tensor forward(const Tensor& x) const;
  // The routing of x [N, d].
  Routing route(const Tensor& x2d) const;

  std::vector<std::shared_ptr<MoeExpert>> experts;  // "experts.{e}"
  std::shared_ptr<MoeGate> gate;
  std::shared_ptr<nn::SwiGLU> shared_experts;  // null when num_shared == 0

 private:
  MoeOptions opt_;
};

}  // namespace kimi::models
