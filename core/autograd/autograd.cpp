// Reverse-mode autograd engine: graph recording, topological backward, gradient accumulation.
#include "core/autograd/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "core/ops/ops.h"
#include "core/tensor/op_profile.h"

namespace kimi {

static thread_local bool g_grad_enabled = true;

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

Node::Node(std::string name, std::vector<Tensor> inputs, BackwardFn fn,
           std::vector<Shape> out_shapes, DType out_dtype, Device out_device)
    : name_(std::move(name)),
      inputs_(std::move(inputs)),
      fn_(std::move(fn)),
      out_shapes_(std::move(out_shapes)),
      out_dtype_(out_dtype),
      out_device_(out_device) {}

std::vector<Tensor> Node::apply(const std::vector<Tensor>& grad_outputs) {
  KIMI_CHECK(!released_,
             "backward through the graph of op '{}' a second time: its saved tensors were freed "
             "by the first backward",
             name_);
  KIMI_CHECK(fn_ != nullptr, "op '{}' has no backward", name_);
  std::vector<Tensor> g = fn_(grad_outputs);
  KIMI_CHECK(g.size() == inputs_.size(), "op '{}' backward returned {} gradients for {} inputs",
             name_, g.size(), inputs_.size());
  return g;
}

void Node::release() {
  fn_ = nullptr;
  inputs_.clear();
  released_ = true;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

std::vector<Tensor> record_multi(const char* name, std::vector<Tensor> outs,
                                 const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (!any_requires_grad(inputs)) return outs;
  std::vector<Shape> shapes;
  for (const Tensor& o : outs) shapes.push_back(o.shape());
  auto node = std::make_shared<Node>(name, inputs, std::move(fn), std::move(shapes),
                                     outs[0].dtype(), outs[0].device());
  for (size_t i = 0; i < outs.size(); ++i) {
    // Outputs may alias inputs' storage (views); give each its own impl so grad_fn is its own.
    outs[i] = outs[i].detach();
    outs[i].set_grad_fn(node, static_cast<int>(i));
  }
  return outs;
}

Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn) {
  return record_multi(name, {std::move(out)}, inputs, std::move(fn))[0];
}

static void accumulate(Tensor& slot, const Tensor& g) { slot = slot.defined() ? add(slot, g) : g; }

// A tensor's gradient in the tensor's own float dtype (autocast: a BF16 activation reached by
// an F32 gradient, or the reverse), so slots and leaves never mix dtypes.
static Tensor in_dtype_of(const Tensor& g, const Tensor& t) {
  if (g.dtype() == t.dtype() || !is_floating(g.dtype()) || !is_floating(t.dtype())) return g;
  return g.to(t.dtype());
}

// Depth-first post-order over the nodes reachable from the roots. Holds each node alive:
// releasing a parent drops the last reference to its children.
static std::vector<std::shared_ptr<Node>> topo_order(const std::vector<Tensor>& roots) {
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack;
  for (const Tensor& r : roots) {
    const std::shared_ptr<Node>& n = r.grad_fn();
    if (!n || seen.count(n.get())) continue;
    seen.insert(n.get());
    stack.push_back({n, 0});
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next < node->inputs().size()) {
        const Tensor& in = node->inputs()[next++];
        std::shared_ptr<Node> child = in.defined() ? in.grad_fn() : nullptr;
        if (child && !seen.count(child.get())) {
          seen.insert(child.get());
          stack.push_back({child, 0});
        }
      } else {
        order.push_back(node);
        stack.pop_back();
      }
    }
  }
  return order;  // children before parents
}

// For the LeafGradReady hook: the leaves (by storage) that require grad, each listed at the
// last position of the reverse-topological walk whose node takes it as an input. After the
// walk passes that position (whether gradient flowed through the node or not) nothing else
// can add to the leaf's gradient.
static std::vector<std::vector<Tensor>> leaves_by_last_use(
    const std::vector<std::shared_ptr<Node>>& order) {
  std::vector<std::vector<Tensor>> at(order.size());
  std::unordered_set<const TensorImpl*> placed;
  for (size_t pos = 0; pos < order.size(); ++pos) {  // walked last-to-first below
    for (const Tensor& in : order[pos]->inputs())
      if (in.defined() && in.requires_grad() && !in.grad_fn() &&
          placed.insert(in.impl().get()).second)
        at[order.size() - 1 - pos].push_back(in);
  }
  return at;
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  const LeafGradReady& on_leaf_ready) {
  KIMI_CHECK(roots.size() == grads.size(), "run_backward: {} roots, {} gradients", roots.size(),
             grads.size());
  NoGradGuard no_grad;
  std::unordered_map<Node*, std::vector<Tensor>> pending;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    KIMI_CHECK(r.requires_grad(), "backward from a tensor that does not require grad");
    KIMI_CHECK(grads[i].shape() == r.shape(),
               "backward: gradient shape {} for a tensor of shape {}", shape_str(grads[i].shape()),
               shape_str(r.shape()));
    const Tensor gr = in_dtype_of(grads[i], r);
    if (!r.grad_fn()) {  // a leaf root
      Tensor g = r.grad();
      accumulate(g, gr);
      const_cast<Tensor&>(r).set_grad(g);
      continue;
    }
    KIMI_CHECK(!r.grad_fn()->released(),
               "backward through the graph of op '{}' a second time: its saved tensors were "
               "freed by the first backward",
               r.grad_fn()->name());
    auto& slots = pending[r.grad_fn().get()];
    slots.resize(r.grad_fn()->num_outputs());
    accumulate(slots[r.output_nr()], gr);
  }
  std::vector<std::shared_ptr<Node>> order = topo_order(roots);
  std::vector<std::vector<Tensor>> ready_after;
  if (on_leaf_ready) ready_after = leaves_by_last_use(order);
  // Calls the hook for the leaves whose last consumer is at walk position `step`.
  auto announce = [&](size_t step) {
    if (!on_leaf_ready) return;
    for (const Tensor& leaf : ready_after[step])
      if (leaf.grad().defined()) on_leaf_ready(leaf);
    ready_after[step].clear();
  };
  for (const Tensor& r : roots)  // leaf roots no node feeds are complete already
    if (on_leaf_ready && !r.grad_fn() && r.grad().defined()) {
      bool fed = false;
      for (const auto& at : ready_after)
        for (const Tensor& leaf : at) fed = fed || leaf.impl() == r.impl();
      if (!fed) on_leaf_ready(r);
    }
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const size_t step = static_cast<size_t>(it - order.rbegin());
    Node* node = it->get();
    auto found = pending.find(node);
    if (found == pending.end()) {  // nothing flowed here
      announce(step);
      continue;
    }
    const profile::BackwardScope timed(node->name());  // the op profiler's span, when one runs
    std::vector<Tensor> gout = std::move(found->second);
    pending.erase(found);
    gout.resize(node->num_outputs());
    for (size_t i = 0; i < gout.size(); ++i)
      if (!gout[i].defined())
        gout[i] = Tensor::zeros(node->out_shape(i), node->out_dtype(), node->out_device());
    std::vector<Tensor> gin = node->apply(gout);
    const std::vector<Tensor>& inputs = node->inputs();
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& in = inputs[i];
      if (!in.defined() || !gin[i].defined() || !in.requires_grad()) continue;
      KIMI_CHECK(gin[i].shape() == in.shape(),
                 "op '{}' gave input {} a gradient of shape {}, want {}", node->name(), i,
                 shape_str(gin[i].shape()), shape_str(in.shape()));
      gin[i] = in_dtype_of(gin[i], in);
      if (in.grad_fn()) {
        auto& slots = pending[in.grad_fn().get()];
        slots.resize(in.grad_fn()->num_outputs());
        accumulate(slots[in.output_nr()], gin[i]);
      } else {
        Tensor g = in.grad();
        accumulate(g, gin[i]);
        const_cast<Tensor&>(in).set_grad(g);
      }
    }
    node->release();
    announce(step);
  }
}

Tensor sum_to_shape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  KIMI_CHECK(lead >= 0, "sum_to_shape: {} to {}", shape_str(grad.shape()), shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < grad.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && grad.size(d) != 1)) dims.push_back(d);
  Tensor s = sum(grad, dims, /*keepdim=*/true);
  return s.reshape(shape);
}

void Tensor::backward(const Tensor& grad) const {
  Tensor g = grad;
  if (!g.defined()) {
    KIMI_CHECK(numel() == 1, "backward() without a gradient needs a scalar, got {}", str());
    g = Tensor::ones(shape(), dtype(), device());
  }
  run_backward({*this}, {g});
}

}  // namespace kimi
