// AdamW, SGD, schedules and clipping. Updates run in place on the parameters' storage through
// the optimizer kernels of the parameter's device (core/backend/optim_kernels.h; the GPU ones are
// fused, F32 only); state follows its parameter's device, see state_on.
#include "core/optim/optimizer.h"

#include <cmath>

#include "core/backend/optim_kernels.h"
#include "core/ops/ops.h"
#include "core/tensor/op_profile.h"

namespace kimi::optim {

static constexpr double kPi = 3.14159265358979323846;

bool default_decay_filter(const std::string& name, const Tensor& p) {
  if (p.dim() < 2) return false;
  return name.find("norm") == std::string::npos && name.find("bias") == std::string::npos;
}

void Optimizer::zero_grad() {
  for (auto& [n, p] : params_) p.zero_grad();
}

// A parameter may move after the optimizer was built (nn::Module::to keeps its identity), so
// its state moves with it at the next step.
static void state_on(Tensor& state, const Tensor& p) {
  if (state.device() != p.device()) state = state.to(p.device());
}

// The gradient of p as the kernels read it: contiguous, on p's device, in p's dtype.
static Tensor grad_for(const Tensor& p, const Tensor& g) {
  Tensor r = g.detach();
  if (r.device() != p.device()) r = r.to(p.device());
  if (r.dtype() != p.dtype()) r = r.to(p.dtype());
  return r.contiguous();
}

AdamW::AdamW(nn::NamedTensors params, AdamWOptions opt, DecayFilter decay)
    : Optimizer(std::move(params)), opt_(opt) {
  for (auto& [name, p] : params_) {
    decay_.push_back(decay(name, p));
    m_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    v_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
  }
}

void AdamW::step(double lr) {
  ++steps_;
  const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(steps_));
  const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(steps_));
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    KIMI_CHECK(p.is_contiguous(), "AdamW: parameter '{}' is not contiguous", params_[i].first);
    state_on(m_[i], p);
    state_on(v_[i], p);
    const AdamWHyper h{lr,  opt_.beta1, opt_.beta2, opt_.eps, decay_[i] ? opt_.weight_decay : 0.0,
                       bc1, bc2};
    kernels<OptimKernels>(p, "AdamW", "step").adamw_step(p, grad_for(p, g), m_[i], v_[i], h);
  }
}

std::map<std::string, Tensor> AdamW::state_dict() const {
  std::map<std::string, Tensor> s;
  for (size_t i = 0; i < params_.size(); ++i) {
    s["optim.m." + params_[i].first] = m_[i];
    s["optim.v." + params_[i].first] = v_[i];
  }
  s["optim.step"] = Tensor::from_vector(std::vector<int64_t>{steps_}, {1});
  return s;
}

static const Tensor& state_entry(const std::map<std::string, Tensor>& s, const std::string& key,
                                 const Shape& shape) {
  auto it = s.find(key);
  if (it == s.end()) throw UserError(fmt::format("optimizer state is missing '{}'", key));
  if (it->second.shape() != shape)
    throw UserError(fmt::format("optimizer state '{}': expected shape {}, got {}", key,
                                shape_str(shape), shape_str(it->second.shape())));
  return it->second;
}

void AdamW::load_state_dict(const std::map<std::string, Tensor>& s) {
  for (size_t i = 0; i < params_.size(); ++i) {
    m_[i].copy_(state_entry(s, "optim.m." + params_[i].first, m_[i].shape()));
    v_[i].copy_(state_entry(s, "optim.v." + params_[i].first, v_[i].shape()));
  }
  steps_ = static_cast<int64_t>(state_entry(s, "optim.step", {1}).item());
}

SGD::SGD(nn::NamedTensors params, double momentum, double weight_decay)
    : Optimizer(std::move(params)), momentum_(momentum), weight_decay_(weight_decay) {
  for (auto& [n, p] : params_) buf_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
}

// buf = momentum buf + (g + wd p); p -= lr buf
void SGD::step(double lr) {
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    state_on(buf_[i], p);
    kernels<OptimKernels>(p, "SGD", "step")
        .sgd_step(p, grad_for(p, g), buf_[i], lr, momentum_, weight_decay_);
  }
}

std::map<std::string, Tensor> SGD::state_dict() const {
  std::map<std::string, Tensor> s;
  for (size_t i = 0; i < params_.size(); ++i) s["optim.momentum." + params_[i].first] = buf_[i];
  s["optim.step"] = Tensor::from_vector(std::vector<int64_t>{steps_}, {1});
  return s;
}

void SGD::load_state_dict(const std::map<std::string, Tensor>& s) {
  for (size_t i = 0; i < params_.size(); ++i)
    buf_[i].copy_(state_entry(s, "optim.momentum." + params_[i].first, buf_[i].shape()));
  steps_ = static_cast<int64_t>(state_entry(s, "optim.step", {1}).item());
}

Schedule schedule_from_name(const std::string& name) {
  if (name == "cosine") return Schedule::kCosine;
  if (name == "linear") return Schedule::kLinear;
  if (name == "constant") return Schedule::kConstant;
  throw UserError(fmt::format("unknown schedule '{}' (cosine, linear, constant)", name));
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double peak, double min_ratio,
             Schedule s) {
  if (warmup > 0 && step < warmup)
    return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (s == Schedule::kConstant) return peak;
  const double span = std::max<int64_t>(total - warmup, 1);
  const double t = std::min(1.0, std::max(0.0, (step - warmup) / span));
  const double frac = s == Schedule::kCosine ? 0.5 * (1 + std::cos(kPi * t)) : 1 - t;
  return peak * (min_ratio + (1 - min_ratio) * frac);
}

// The squared norms are summed per device (on the GPU into one device scalar, read back once).
// Clipping writes new gradient tensors rather than scaling in place: a gradient may be shared
// between parameters (autograd can hand the same tensor to several leaves).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  std::vector<Tensor> per_device[kNumDevices];
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) per_device[static_cast<int>(g.device())].push_back(g);
  }
  double total = 0;
  profile::mark_op("clip_grad_norm", "step");
  for (int d = 0; d < kNumDevices; ++d)
    if (!per_device[d].empty())
      total += KernelTable<OptimKernels>::get(static_cast<Device>(d), "clip_grad_norm")
                   .sum_of_squares(per_device[d]);
  const double norm = std::sqrt(total);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (g.defined()) const_cast<Tensor&>(p).set_grad(mul_scalar(g.detach(), scale));
    }
  }
  return norm;
}

}  // namespace kimi::optim
