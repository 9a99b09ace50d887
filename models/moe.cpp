// MoE routing and the sorted, grouped-GEMM forward (HF modeling_kimi.py KimiMoEGate and
// KimiSparseMoeBlock; DeepSeek-V3 noaux_tc routing as in vLLM's grouped_topk; the bias update and
// the balance loss of DeepSeek-V3 section 2.1.2, as Moonlight trains).
#include "models/moe.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>

#include "core/autograd/autograd.h"
#include "core/ops/moe_ops.h"

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

// y unchanged in the forward; in the backward, `loss` gets gradient 1 as if it had been added to
// the training loss (DeepSeek's AddAuxiliaryLoss): the balance loss trains the router without the
// trainer knowing about it, and the logged loss stays the language-model loss.
Tensor attach_loss(const Tensor& y, const Tensor& loss) {
  if (!any_requires_grad({y, loss})) return y;
  Tensor out = y.detach();
  const DType dt = loss.dtype();
  const Device dev = loss.device();
  return record("moe_balance_loss", out, {y, loss},
                [dt, dev](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  return {g[0], Tensor::ones({}, dt, dev)};
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

std::vector<double> balanced_bias(const std::vector<double>& bias, const std::vector<double>& load,
                                  double rate) {
  KIMI_CHECK(bias.size() == load.size() && !load.empty(), "moe: {} biases for {} loads",
             bias.size(), load.size());
  const double mean = std::accumulate(load.begin(), load.end(), 0.0) / load.size();
  std::vector<double> out(bias);
  for (size_t e = 0; e < out.size(); ++e) {
    const double gap = mean - load[e];
    out[e] += rate * ((gap > 0) - (gap < 0));
  }
  return out;
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
      opt.topk_group <= 0 || opt.topk_group > opt.num_groups ||
      opt.top_k > opt.topk_group * (opt.num_experts / opt.num_groups))
    throw UserError(fmt::format("moe: bad sizes (experts {}, top-k {}, hidden {}, groups {}/{})",
                                opt.num_experts, opt.top_k, opt.expert_hidden, opt.topk_group,
                                opt.num_groups));
  if (opt.bias_update_rate < 0 || opt.aux_loss_coef < 0)
    throw UserError(fmt::format("moe: bias_update_rate {} and aux_loss_coef {} must be >= 0",
                                opt.bias_update_rate, opt.aux_loss_coef));
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
  NoGradGuard no_grad;
  // The router in at least fp32 (the parameters' dtype: f32 or f64).
  Tensor scores = sigmoid(linear(x2d.to(gate->weight.dtype()), gate->weight));
  return route_tokens(scores.to_vector<double>(), gate->e_score_correction_bias.to_vector<double>(),
                      x2d.size(0), opt_);
}

RoutedSlots route_slots(const Tensor& x2, const MoeGate& gate, const MoeOptions& opt) {
  const int64_t N = x2.size(0), E = opt.num_experts, K = opt.top_k;
  RoutedSlots r;
  // The choice uses the biased scores, the weights the unbiased ones.
  r.scores = sigmoid(linear(x2.to(gate.weight.dtype()), gate.weight));  // [N, E]
  r.choice =
      moe_route_topk(r.scores, gate.e_score_correction_bias, K, opt.num_groups, opt.topk_group);
  r.weight = gather_rows(r.scores.reshape({N * E, 1}), r.choice.flat).reshape({N, K});
  if (opt.renormalize && K > 1) r.weight = r.weight / add_scalar(sum(r.weight, {1}, true), 1e-20);
  r.weight = mul_scalar(r.weight, opt.routed_scaling_factor);
  r.sorted = moe_sort_by_expert(r.choice.ids, E);
  return r;
}

StackedExperts stack_experts(const std::vector<std::shared_ptr<MoeExpert>>& experts) {
  std::vector<Tensor> w1s, w3s, w2s;
  for (const auto& ex : experts) {
    w1s.push_back(ex->w1->weight), w3s.push_back(ex->w3->weight), w2s.push_back(ex->w2->weight);
  }
  return {concat({stack(w1s, 0), stack(w3s, 0)}, 1), stack(w2s, 0)};
}

Tensor grouped_swiglu(const Tensor& xs, const StackedExperts& w, const Tensor& offsets) {
  const int64_t h = w.w2.size(2);
  std::vector<Tensor> gu = split(grouped_matmul(xs, nn::cast_like(w.w13, xs), offsets), {h, h}, 1);
  return grouped_matmul(silu(gu[0]) * gu[1], nn::cast_like(w.w2, xs), offsets);
}

Tensor combine_slots(const Tensor& ys, const Tensor& position, const Tensor& weight) {
  const int64_t N = weight.size(0), K = weight.size(1), d = ys.size(1);
  Tensor yk = gather_rows(ys, position).reshape({N, K, d});  // slot order
  return sum(yk * weight.to(yk.dtype()).reshape({N, K, 1}), {1});
}

Tensor SparseMoeBlock::forward(const Tensor& x) {
  const int64_t d = opt_.d_model, E = opt_.num_experts, K = opt_.top_k;
  KIMI_CHECK(x.size(-1) == d, "moe: input {} for d_model {}", shape_str(x.shape()), d);
  const int64_t N = x.numel() / d, S = N * K;
  Tensor x2 = nn::autocast(x.reshape({N, d}));
  const RoutedSlots r = route_slots(x2, *gate, opt_);
  const Tensor& scores = r.scores;
  const ExpertSort& sorted = r.sorted;
  Tensor xs = gather_rows(x2, sorted.token);                               // [S, d]
  Tensor ys = grouped_swiglu(xs, stack_experts(experts), sorted.offsets);  // [S, d], sorted
  Tensor out = combine_slots(ys, sorted.position, r.weight);
  if (shared_experts) out = out + shared_experts->forward(x2);

  if (grad_enabled()) {
    NoGradGuard no_grad;
    Tensor off = sorted.offsets.to(DType::kF64);
    Tensor counts = off.narrow(0, 1, E) - off.narrow(0, 0, E);
    counts_ = counts_.defined() ? counts_ + counts : counts;
  }
  if (opt_.aux_loss_coef > 0 && grad_enabled()) {
    // DeepSeek-V3's balance loss over the tokens of this forward: alpha * sum_e f_e P_e with
    // f_e = E / (K N) * (tokens routed to e) and P_e = the mean normalised score of e.
    Tensor f;
    {
      NoGradGuard no_grad;
      Tensor off = sorted.offsets.to(scores.dtype());
      f = mul_scalar(off.narrow(0, 1, E) - off.narrow(0, 0, E), static_cast<double>(E) / S);
    }
    Tensor p = mean(scores / sum(scores, {1}, true), {0});
    out = attach_loss(out, mul_scalar(sum(p * f), opt_.aux_loss_coef));
  }
  return out.reshape(x.shape());
}

void SparseMoeBlock::after_optimizer_step(const LoadSum& sum_over_ranks) {
  if (!counts_.defined() && !sum_over_ranks) return;
  std::vector<double> load = counts_.defined() ? counts_.to_vector<double>()
                                               : std::vector<double>(size_t(opt_.num_experts), 0.0);
  counts_ = Tensor();
  if (sum_over_ranks) sum_over_ranks(load);
  const double total = std::accumulate(load.begin(), load.end(), 0.0);
  if (total <= 0) return;
  if (opt_.bias_update_rate > 0) {
    Tensor& bias = gate->e_score_correction_bias;
    const std::vector<double> next =
        balanced_bias(bias.to_vector<double>(), load, opt_.bias_update_rate);
    bias.copy_(Tensor::from_vector(next, bias.shape()).to(bias.dtype()).to(bias.device()));
  }
  for (double& l : load) l /= total;
  last_load_ = std::move(load);
}

std::vector<double> SparseMoeBlock::expert_load() const {
  if (!last_load_.empty() || !counts_.defined()) return last_load_;
  std::vector<double> load = counts_.to_vector<double>();
  const double total = std::accumulate(load.begin(), load.end(), 0.0);
  if (total > 0)
    for (double& l : load) l /= total;
  return load;
}

}  // namespace kimi::models
