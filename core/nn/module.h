// Module: a tree of named parameters, as libtorch's register_module. The dotted names
// ("layers.0.mixer.q_proj.weight") are the checkpoint keys, matching FLA / Hugging Face.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/rng.h"
#include "core/tensor/tensor.h"

namespace kimi::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  NamedTensors named_parameters() const;  // depth first, in registration order
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;
  // Copies tensors in by name (converting dtype). strict: every parameter must be present and
  // no unknown names given; errors name the key and the shapes.
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);
  void zero_grad();
  // Moves every parameter to `device` in place: each parameter keeps its identity (layers hold
  // the same tensors), only its storage moves. Gradients are dropped.
  void to(Device device);

 protected:
  Tensor register_parameter(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void collect(const std::string& prefix, NamedTensors* out) const;
  NamedTensors params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Initialisers (in place, deterministic in rng).
void init_normal(Tensor& t, double std, Rng& rng);
void init_uniform(Tensor& t, double lo, double hi, Rng& rng);
Tensor randn(const Shape& shape, Rng& rng, double std = 1.0, DType dtype = DType::kF32);
Tensor rand_uniform(const Shape& shape, Rng& rng, double lo, double hi, DType dtype = DType::kF32);

}  // namespace kimi::nn
