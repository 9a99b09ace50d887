// Module parameter registry, state loading and initialisers.
#include "core/nn/module.h"

#include <set>

namespace kimi::nn {

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

void Module::collect(const std::string& prefix, NamedTensors* out) const {
  for (const auto& [name, t] : params_) out->emplace_back(prefix + name, t);
  for (const auto& [name, m] : children_) m->collect(prefix + name + ".", out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", &out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  std::set<std::string> used;
  for (auto& [name, p] : named_parameters()) {
    auto it = state.find(name);
    if (it == state.end()) {
      if (strict)
        throw UserError(
            fmt::format("missing parameter '{}' (shape {})", name, shape_str(p.shape())));
      continue;
    }
    if (it->second.shape() != p.shape())
      throw UserError(fmt::format("parameter '{}': expected shape {}, got {}", name,
                                  shape_str(p.shape()), shape_str(it->second.shape())));
    p.copy_(it->second);
    used.insert(name);
  }
  if (strict)
    for (auto& [name, t] : state)
      if (!used.count(name))
        throw UserError(fmt::format("unexpected parameter '{}' in the state", name));
}

void Module::to(Device device) {
  for (auto& [n, p] : named_parameters()) {
    if (p.device() == device) continue;
    Tensor moved = p.detach().contiguous().to(device);
    TensorImpl& impl = *p.impl();
    impl.storage = moved.storage();
    impl.offset = moved.offset();
    impl.strides = moved.strides();
    impl.grad.reset();
  }
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

void init_normal(Tensor& t, double std, Rng& rng) {
  std::vector<double> v(t.numel());
  for (double& x : v) x = rng.normal() * std;
  t.copy_(Tensor::from_vector(v, t.shape()));
}

void init_uniform(Tensor& t, double lo, double hi, Rng& rng) {
  std::vector<double> v(t.numel());
  for (double& x : v) x = lo + (hi - lo) * rng.uniform01();
  t.copy_(Tensor::from_vector(v, t.shape()));
}

Tensor randn(const Shape& shape, Rng& rng, double std, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  init_normal(t, std, rng);
  return t;
}

Tensor rand_uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  init_uniform(t, lo, hi, rng);
  return t;
}

}  // namespace kimi::nn
