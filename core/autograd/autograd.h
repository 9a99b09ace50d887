// Reverse-mode autograd: each op that needs a gradient records a Node holding its inputs
// (the graph edges) and a backward closure with the tensors it saved. backward() walks the
// nodes in reverse topological order, accumulating gradients for shared inputs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace kimi {

// Given the gradients of a node's outputs (one per output; zeros where nothing flowed),
// returns one gradient per input (undefined where the input needs none).
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

class Node {
 public:
  Node(std::string name, std::vector<Tensor> inputs, BackwardFn fn, std::vector<Shape> out_shapes,
       DType out_dtype, Device out_device);
  const std::string& name() const { return name_; }
  const std::vector<Tensor>& inputs() const { return inputs_; }
  size_t num_outputs() const { return out_shapes_.size(); }
  const Shape& out_shape(size_t i) const { return out_shapes_[i]; }
  DType out_dtype() const { return out_dtype_; }
  Device out_device() const { return out_device_; }
  bool released() const { return released_; }
  std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs);
  // Drops the saved tensors and edges once backward has used them.
  void release();

 private:
  std::string name_;
  std::vector<Tensor> inputs_;
  BackwardFn fn_;
  std::vector<Shape> out_shapes_;
  DType out_dtype_;
  Device out_device_;
  bool released_ = false;
};

// Gradient recording is on unless a NoGradGuard is alive on this thread.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any input requires a gradient.
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Attaches a backward to an op's output(s) when needed; returns the output(s) unchanged
// otherwise. The closure runs with grad mode off, so backward ops record nothing.
Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn);
std::vector<Tensor> record_multi(const char* name, std::vector<Tensor> outs,
                                 const std::vector<Tensor>& inputs, BackwardFn fn);

// Called during a backward with a leaf (a handle sharing the leaf's storage and .grad()) once
// its gradient from this backward is complete: no node still to run feeds it. Data-parallel
// training starts summing a bucket of gradients over ranks while the backward goes on.
using LeafGradReady = std::function<void(const Tensor& leaf)>;

// Backward from `roots` with upstream gradients `grads` (same length). Leaves that require
// grad accumulate into .grad(). Frees the graph as it goes. `on_leaf_ready`, when set, is called
// once per leaf that received a gradient, as soon as that gradient is final.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  const LeafGradReady& on_leaf_ready = nullptr);

// Reduces a broadcast gradient back to `shape` (sums over expanded dims).
Tensor sum_to_shape(const Tensor& grad, const Shape& shape);

}  // namespace kimi
