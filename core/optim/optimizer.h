// Optimizers (AdamW with decoupled weight decay and bias correction; SGD with momentum),
// learning-rate schedules and global gradient-norm clipping. State is fp32 (or the
// parameter's dtype) and saved under "optim.<kind>.<param name>" in checkpoints. It lives on
// its parameter's device (following the parameter at the next step if that moved), so
// state_dict() may hand out CUDA tensors: copy them to the CPU to save; load_state_dict takes
// tensors on any device. Parameters on CUDA must be contiguous F32 (fused kernels).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "core/nn/module.h"

namespace kimi::optim {

// Which parameters get weight decay: by default not biases, norms' weights and 1-d tensors.
using DecayFilter = std::function<bool(const std::string& name, const Tensor& p)>;
bool default_decay_filter(const std::string& name, const Tensor& p);

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual void step(double lr) = 0;
  void zero_grad();
  int64_t steps() const { return steps_; }
  // Optimizer state as named tensors (for checkpoints) and back.
  virtual std::map<std::string, Tensor> state_dict() const = 0;
  virtual void load_state_dict(const std::map<std::string, Tensor>& state) = 0;

 protected:
  explicit Optimizer(nn::NamedTensors params) : params_(std::move(params)) {}
  nn::NamedTensors params_;
  int64_t steps_ = 0;
};

class AdamW : public Optimizer {
 public:
  AdamW(nn::NamedTensors params, AdamWOptions opt, DecayFilter decay = default_decay_filter);
  // m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m_hat / (sqrt(v_hat) + eps) + wd p)
  void step(double lr) override;
  std::map<std::string, Tensor> state_dict() const override;
  void load_state_dict(const std::map<std::string, Tensor>& state) override;

 private:
  AdamWOptions opt_;
  std::vector<bool> decay_;
  std::vector<Tensor> m_, v_;
};

class SGD : public Optimizer {
 public:
  SGD(nn::NamedTensors params, double momentum = 0.0, double weight_decay = 0.0);
  void step(double lr) override;
  std::map<std::string, Tensor> state_dict() const override;
  void load_state_dict(const std::map<std::string, Tensor>& state) override;

 private:
  double momentum_, weight_decay_;
  std::vector<Tensor> buf_;
};

enum class Schedule { kCosine, kLinear, kConstant };
Schedule schedule_from_name(const std::string& name);
// Linear warmup from 0 to peak over `warmup` steps, then decay to peak * min_ratio at `total`.
double lr_at(int64_t step, int64_t total, int64_t warmup, double peak, double min_ratio,
             Schedule s);

// Scales all gradients so their global L2 norm is at most max_norm (<= 0: no clipping).
// Returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace kimi::optim
