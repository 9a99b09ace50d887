// AdamW, SGD, schedules and clipping. Updates run in place on the parameters' storage: on the
// CPU here, on the GPU through the fused kernels of core/cuda/optim/optim.h when a parameter lives
// there (F32 parameters; state follows its parameter's device, see state_on).
#include "core/optim/optimizer.h"

#include <cmath>

#include "core/ops/ops.h"
#ifdef KIMI_LAB_CUDA
#include "core/cuda/optim/optim.h"
#endif

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

#ifdef KIMI_LAB_CUDA
// The gradient of p as the GPU kernels read it: contiguous, on p's device, in p's dtype.
static Tensor grad_for(const Tensor& p, const Tensor& g) {
  Tensor r = g.detach();
  if (r.device() != p.device()) r = r.to(p.device());
  if (r.dtype() != p.dtype()) r = r.to(p.dtype());
  return r.contiguous();
}

static void check_cuda_param(const Tensor& p, const std::string& name, const char* opt) {
  KIMI_CHECK(p.dtype() == DType::kF32 && p.is_contiguous(),
             "{}: CUDA parameter '{}' must be contiguous F32, got {}", opt, name, p.str());
}
#endif

AdamW::AdamW(nn::NamedTensors params, AdamWOptions opt, DecayFilter decay)
    : Optimizer(std::move(params)), opt_(opt) {
  for (auto& [name, p] : params_) {
    decay_.push_back(decay(name, p));
    m_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    v_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
  }
}

template <class T>
static void adamw_update(int64_t n, T* p, const T* g, T* m, T* v, double lr, double b1, double b2,
                         double eps, double wd, double bc1, double bc2) {
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    double gi = g[i];
    double mi = b1 * m[i] + (1 - b1) * gi;
    double vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = static_cast<T>(mi);
    v[i] = static_cast<T>(vi);
    double update = (mi / bc1) / (std::sqrt(vi / bc2) + eps) + wd * p[i];
    p[i] = static_cast<T>(p[i] - lr * update);
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
#ifdef KIMI_LAB_CUDA
    if (p.device() == Device::kCUDA) {
      check_cuda_param(p, params_[i].first, "AdamW");
      const Tensor gd = grad_for(p, g);
      const cuda::AdamWStep s{static_cast<float>(lr),
                              static_cast<float>(opt_.beta1),
                              static_cast<float>(opt_.beta2),
                              static_cast<float>(opt_.eps),
                              static_cast<float>(decay_[i] ? opt_.weight_decay : 0.0),
                              static_cast<float>(bc1),
                              static_cast<float>(bc2)};
      cuda::adamw_step(p.numel(), p.data<float>(), gd.data<float>(), m_[i].data<float>(),
                       v_[i].data<float>(), s);
      continue;
    }
#endif
    Tensor gc = g.contiguous();
    dispatch_float(p.dtype(), "AdamW", [&](auto tag_) {
      using scalar_t = KIMI_SCALAR_T(tag_);
      adamw_update<scalar_t>(p.numel(), p.data<scalar_t>(), gc.data<scalar_t>(), m_[i].data<scalar_t>(),
                             v_[i].data<scalar_t>(), lr, opt_.beta1, opt_.beta2, opt_.eps,
                             decay_[i] ? opt_.weight_decay : 0.0, bc1, bc2);
    });
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
    throw UserError(fmt::format("optimizer state '{}': expected shape {}, got {}", key, shape_str(shape),
                                shape_str(it->second.shape())));
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
#ifdef KIMI_LAB_CUDA
    if (p.device() == Device::kCUDA) {
      check_cuda_param(p, params_[i].first, "SGD");
      const Tensor gd = grad_for(p, g);
      cuda::sgd_step(p.numel(), p.data<float>(), gd.data<float>(), buf_[i].data<float>(),
                     static_cast<float>(lr), static_cast<float>(momentum_),
                     static_cast<float>(weight_decay_));
      continue;
    }
#endif
    Tensor gc = g.contiguous();
    dispatch_float(p.dtype(), "SGD", [&](auto tag_) {
      using scalar_t = KIMI_SCALAR_T(tag_);
      scalar_t* pp = p.data<scalar_t>();
      scalar_t* b = buf_[i].data<scalar_t>();
      const scalar_t* gp = gc.data<scalar_t>();
      for (int64_t j = 0; j < p.numel(); ++j) {
        b[j] = static_cast<scalar_t>(momentum_ * b[j] + gp[j] + weight_decay_ * pp[j]);
        pp[j] = static_cast<scalar_t>(pp[j] - lr * b[j]);
      }
    });
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

double lr_at(int64_t step, int64_t total, int64_t warmup, double peak, double min_ratio, Schedule s) {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (s == Schedule::kConstant) return peak;
  const double span = std::max<int64_t>(total - warmup, 1);
  const double t = std::min(1.0, std::max(0.0, (step - warmup) / span));
  const double frac = s == Schedule::kCosine ? 0.5 * (1 + std::cos(kPi * t)) : 1 - t;
  return peak * (min_ratio + (1 - min_ratio) * frac);
}

// CPU gradients are summed on the host; CUDA ones by per-tensor kernels into one device scalar,
// read back once. Clipping writes new gradient tensors rather than scaling in place: a gradient
// may be shared between parameters (autograd can hand the same tensor to several leaves).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  double total = 0;
#ifdef KIMI_LAB_CUDA
  std::vector<Tensor> keep;  // contiguous copies alive until the sum is read
  std::vector<cuda::ElemType> types;
  std::vector<int64_t> sizes;
  std::vector<const void*> data;
#endif
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
#ifdef KIMI_LAB_CUDA
    if (g.device() == Device::kCUDA) {
      Tensor gc = g.detach().contiguous();
      keep.push_back(gc);
      types.push_back(static_cast<cuda::ElemType>(gc.dtype()));
      sizes.push_back(gc.numel());
      data.push_back(gc.raw_data());
      continue;
    }
#endif
    for (double x : g.to_vector<double>()) total += x * x;
  }
#ifdef KIMI_LAB_CUDA
  if (!keep.empty())
    total += cuda::sum_of_squares(static_cast<int>(keep.size()), types.data(), sizes.data(),
                                  data.data());
#endif
  const double norm = std::sqrt(total);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
#ifdef KIMI_LAB_CUDA
      if (g.device() == Device::kCUDA) {
        Tensor gc = g.detach().contiguous();
        Tensor out = Tensor::empty(gc.shape(), gc.dtype(), Device::kCUDA);
        cuda::scale(static_cast<cuda::ElemType>(gc.dtype()), gc.numel(), gc.raw_data(), scale,
                    out.raw_data());
        const_cast<Tensor&>(p).set_grad(out);
        continue;
      }
#endif
      const_cast<Tensor&>(p).set_grad(mul_scalar(g, scale));
    }
  }
  return norm;
}

}  // namespace kimi::optim
