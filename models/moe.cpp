// MoE routing and the gather / expert / scatter-add forward (HF modeling_kimi.py KimiMoEGate and
// KimiSparseMoeBlock.moe_infer; DeepSeek-V3 noaux_tc routing as in vLLM's grouped_topk).
#include "models/moe.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/autograd/autograd.h"
#include "core/backend/sequence_kernels.h"

namespace kimi::models {
namespace {

// Group-limited routing (DeepSeek-V3): a group's score is the sum of its two best biased scores;
// experts outside the best topk_group groups are removed from the choice.
void mask_groups(std::vector<double>& choice, int64_t groups, int64_t topk_group) {
  const int64_t per = static_cast<int64_t>(choice.size()) / groups;
  std::vector<double> group_score(groups);
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<double> v(choice.begin() + g * per, choice.begin() + (g + 1) * per);
    const int64_t best = std::min<int64_t>(2, per);
    std::partial_sort(v.begin(), v.begin() + best, v.end(), std::greater<>());
    group_score[g] = std::accumulate(v.begin(), v.begin() + best, 0.0);
  }
  std::vector<int64_t> order(groups);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return group_score[a] > group_score[b]; });
  for (int64_t i = topk_group; i < groups; ++i)
    std::fill(choice.begin() + order[i] * per, choice.begin() + (order[i] + 1) * per,
              -std::numeric_limits<double>::infinity());
}

Tensor ids_tensor(const std::vector<int64_t>& idx, Device device) {
  return Tensor::from_vector(idx, {static_cast<int64_t>(idx.size())}).to(device);
}

// x [N, d] contiguous: rows idx -> [n, d].
Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& idx) {
  if (x.device() != Device::kCPU) return embedding(x, ids_tensor(idx, x.device()));
  const int64_t d = x.size(1);
  Tensor out = Tensor::empty({static_cast<int64_t>(idx.size()), d}, x.dtype());
  const size_t row = static_cast<size_t>(d) * dtype_size(x.dtype());
  const auto* src = static_cast<const char*>(x.raw_data());
  auto* dst = static_cast<char*>(out.raw_data());
  for (size_t i = 0; i < idx.size(); ++i) std::memcpy(dst + i * row, src + idx[i] * row, row);
  return out;
}

// out [N, d] += w[i] * y[i] into rows idx[i] (y [n, d]).
void scatter_add_rows(Tensor& out, const std::vector<int64_t>& idx, const std::vector<double>& w,
                      const Tensor& y) {
  const int64_t d = out.size(1);
  if (out.device() != Device::kCPU) {
    // The embedding backward's row scatter with w folded into y; on the CPU below, w stays in
    // double (kimi_tiny's logits are checked to 1e-6).
    const int64_t n = static_cast<int64_t>(idx.size());
    Tensor wy = mul(y, Tensor::from_vector(w, {n, 1}).to(y.dtype()).to(y.device()));
    Tensor rows =
        kernels<SequenceKernels>(out, "moe scatter_add")
            .embedding_backward(ids_tensor(idx, out.device()), wy.contiguous(), out.size(0));
    out = add(out, rows.to(out.dtype()));
    return;
  }
  dispatch_float(out.dtype(), "moe scatter_add", [&](auto tag) {
    using scalar_t = KIMI_SCALAR_T(tag);
    scalar_t* o = out.data<scalar_t>();
    const scalar_t* src = y.data<scalar_t>();
    for (size_t i = 0; i < idx.size(); ++i) {
      const auto wi = static_cast<scalar_t>(w[i]);
      for (int64_t j = 0; j < d; ++j) o[idx[i] * d + j] += wi * src[i * d + j];
    }
  });
}

}  // namespace

Routing route_tokens(const std::vector<double>& scores, const std::vector<double>& bias,
                     int64_t tokens, const MoeOptions& opt) {
  const int64_t E = opt.num_experts, K = opt.top_k;
  KIMI_CHECK(
      static_cast<int64_t>(scores.size()) == tokens * E && static_cast<int64_t>(bias.size()) == E,
      "route_tokens: {} scores and {} biases for {} tokens x {} experts", scores.size(),
      bias.size(), tokens, E);
  KIMI_CHECK(K >= 1 && K <= E && opt.num_groups >= 1 && E % opt.num_groups == 0,
             "route_tokens: top-k {} of {} experts in {} groups", K, E, opt.num_groups);
  Routing r{tokens, K, std::vector<int64_t>(tokens * K), std::vector<double>(tokens * K)};
  std::vector<double> choice(E);
  std::vector<int64_t> order(E);
  for (int64_t n = 0; n < tokens; ++n) {
    const double* s = scores.data() + n * E;
    for (int64_t e = 0; e < E; ++e) choice[e] = s[e] + bias[e];
    if (opt.num_groups > 1) mask_groups(choice, opt.num_groups, opt.topk_group);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int64_t a, int64_t b) {
      return choice[a] > choice[b] || (choice[a] == choice[b] && a < b);
    });
    double sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += s[order[k]];
    // HF: renormalise only when top_k > 1 (denominator + 1e-20), then scale.
    const double norm = (opt.renormalize && K > 1) ? sum + 1e-20 : 1.0;
    for (int64_t k = 0; k < K; ++k) {
      r.expert[n * K + k] = order[k];
      r.weight[n * K + k] = s[order[k]] / norm * opt.routed_scaling_factor;
    }
  }
  return r;
}

MoeGate::MoeGate(const MoeOptions& opt, Rng& rng) {
  weight = register_parameter(
      "weight", nn::randn({opt.num_experts, opt.d_model}, rng, opt.init_std, opt.dtype));
  e_score_correction_bias =
      register_parameter("e_score_correction_bias", Tensor::zeros({opt.num_experts}, opt.dtype));
}

MoeExpert::MoeExpert(int64_t d, int64_t hidden, Rng& rng, const nn::InitOptions& init) {
  w1 = register_module("w1", std::make_shared<nn::Linear>(d, hidden, false, rng, init));
  w2 = register_module("w2", std::make_shared<nn::Linear>(hidden, d, false, rng, init));
  w3 = register_module("w3", std::make_shared<nn::Linear>(d, hidden, false, rng, init));
}

Tensor MoeExpert::forward(const Tensor& x) const {
  return w2->forward(silu(w1->forward(x)) * w3->forward(x));
}

SparseMoeBlock::SparseMoeBlock(const MoeOptions& opt, Rng& rng) : opt_(opt) {
  if (opt.num_experts <= 0 || opt.top_k <= 0 || opt.top_k > opt.num_experts ||
      opt.expert_hidden <= 0 || opt.num_groups <= 0 || opt.num_experts % opt.num_groups != 0 ||
      opt.topk_group <= 0 || opt.topk_group > opt.num_groups)
    throw UserError(fmt::format("moe: bad sizes (experts {}, top-k {}, hidden {}, groups {}/{})",
                                opt.num_experts, opt.top_k, opt.expert_hidden, opt.topk_group,
                                opt.num_groups));
  const nn::InitOptions init{opt.init_std, opt.dtype};
  for (int64_t e = 0; e < opt.num_experts; ++e)
    experts.push_back(
        register_module("experts." + std::to_string(e),
                        std::make_shared<MoeExpert>(opt.d_model, opt.expert_hidden, rng, init)));
  gate = register_module("gate", std::make_shared<MoeGate>(opt, rng));
  if (opt.num_shared > 0)
    shared_experts = register_module(
        "shared_experts",
        std::make_shared<nn::SwiGLU>(opt.d_model, opt.expert_hidden * opt.num_shared, rng, init));
}

Routing SparseMoeBlock::route(const Tensor& x2d) const {
  // The router in at least fp32 (the parameters' dtype: f32 or f64).
  Tensor scores = sigmoid(linear(x2d.to(gate->weight.dtype()), gate->weight));
  return route_tokens(scores.to_vector<double>(), gate->e_score_correction_bias.to_vector<double>(),
                      x2d.size(0), opt_);
}

Tensor SparseMoeBlock::forward(const Tensor& x) const {
  KIMI_CHECK(!any_requires_grad({x, gate->weight}),
             "moe: the MoE block is inference only (run it under NoGradGuard)");
  const int64_t d = opt_.d_model, N = x.numel() / d;
  KIMI_CHECK(x.size(-1) == d, "moe: input {} for d_model {}", shape_str(x.shape()), d);
  Tensor x2 = x.reshape({N, d}).contiguous();
  const Routing r = route(x2);
  // Bucket the (token, weight) pairs by expert, then run each expert once on its rows.
  std::vector<std::vector<int64_t>> rows(opt_.num_experts);
  std::vector<std::vector<double>> weights(opt_.num_experts);
  for (int64_t i = 0; i < N * r.top_k; ++i) {
    rows[r.expert[i]].push_back(i / r.top_k);
    weights[r.expert[i]].push_back(r.weight[i]);
  }
  Tensor out = shared_experts ? shared_experts->forward(x2).contiguous().clone()
                              : Tensor::zeros({N, d}, x2.dtype());
  for (int64_t e = 0; e < opt_.num_experts; ++e) {
    if (rows[e].empty()) continue;
    Tensor ye = experts[e]->forward(gather_rows(x2, rows[e])).contiguous();
    scatter_add_rows(out, rows[e], weights[e], ye);
  }
  return out.reshape(x.shape());
}

}  // namespace kimi::models
