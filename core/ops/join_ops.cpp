// Joins and selection: concat, stack, split (views), where and masked_fill, with backward.
// Semantics follow torch.cat / torch.stack / torch.split / torch.where / Tensor.masked_fill:
// where broadcasts cond, a and b together (cond of any dtype, nonzero = true); masked_fill
// broadcasts the mask to x's shape. Gradients route to the chosen side, zero elsewhere.
#include <cstdint>
#include <vector>

#include "core/backend/elementwise_kernels.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace kimi {
namespace {

// Checks the pieces of a concat/stack agree with xs[0] except along `skip_dim` (-1: none).
void check_joinable(const std::vector<Tensor>& xs, int64_t skip_dim, const char* name) {
  KIMI_CHECK(!xs.empty(), "{}: no tensors", name);
  for (size_t i = 1; i < xs.size(); ++i) {
    KIMI_CHECK(xs[i].dtype() == xs[0].dtype() && xs[i].device() == xs[0].device(),
               "{}: tensor {} is {}, tensor 0 is {}", name, i, xs[i].str(), xs[0].str());
    bool ok = xs[i].dim() == xs[0].dim();
    for (int64_t d = 0; ok && d < xs[0].dim(); ++d)
      ok = d == skip_dim || xs[i].size(d) == xs[0].size(d);
    KIMI_CHECK(ok, "{}: tensor {} has shape {}, tensor 0 has {}", name, i, shape_str(xs[i].shape()),
               shape_str(xs[0].shape()));
  }
}

}  // namespace

// concat and stack are strided copies, which run on any device a tensor can live on: no kernel
// table of their own.

// out = [x0 | x1 | ...] along dim;  dx_i = the matching slice of dout
Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  KIMI_CHECK(!xs.empty(), "concat: no tensors");
  dim = wrap_dim(dim, xs[0].dim(), "concat");
  check_joinable(xs, dim, "concat");
  Shape shape = xs[0].shape();
  std::vector<int64_t> starts;
  shape[dim] = 0;
  for (const Tensor& x : xs) {
    starts.push_back(shape[dim]);
    shape[dim] += x.size(dim);
  }
  Tensor out = Tensor::empty(shape, xs[0].dtype(), xs[0].device());
  {
    NoGradGuard no_grad;
    for (size_t i = 0; i < xs.size(); ++i) out.narrow(dim, starts[i], xs[i].size(dim)).copy_(xs[i]);
  }
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) sizes.push_back(x.size(dim));
  return record("concat", out, xs, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    std::vector<Tensor> grads;
    for (size_t i = 0; i < sizes.size(); ++i)
      grads.push_back(g[0].narrow(dim, starts[i], sizes[i]).contiguous());
    return grads;
  });
}

// out.select(dim, i) = x_i;  dx_i = dout.select(dim, i)
Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  KIMI_CHECK(!xs.empty(), "stack: no tensors");
  dim = wrap_dim(dim, xs[0].dim() + 1, "stack");
  check_joinable(xs, -1, "stack");
  Shape shape = xs[0].shape();
  shape.insert(shape.begin() + dim, static_cast<int64_t>(xs.size()));
  Tensor out = Tensor::empty(shape, xs[0].dtype(), xs[0].device());
  {
    NoGradGuard no_grad;
    for (size_t i = 0; i < xs.size(); ++i) out.select(dim, static_cast<int64_t>(i)).copy_(xs[i]);
  }
  const size_t n = xs.size();
  return record("stack", out, xs, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    std::vector<Tensor> grads;
    for (size_t i = 0; i < n; ++i)
      grads.push_back(g[0].select(dim, static_cast<int64_t>(i)).contiguous());
    return grads;
  });
}

// Pieces are views of x (no copy), one node for all of them;  dx = concat(dpieces) along dim
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    KIMI_CHECK(s >= 0, "split: negative size {}", s);
    total += s;
  }
  KIMI_CHECK(total == x.size(dim), "split: sizes sum to {}, dim {} of {} has {}", total, dim,
             x.str(), x.size(dim));
  std::vector<Tensor> pieces;
  {
    NoGradGuard no_grad;
    int64_t start = 0;
    for (int64_t s : sizes) {
      pieces.push_back(x.detach().narrow(dim, start, s));
      start += s;
    }
  }
  return record_multi("split", pieces, {x},
                      [dim](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                        std::vector<Tensor> parts(g.begin(), g.end());
                        return {concat(parts, dim)};
                      });
}

// out = cond ? a : b (all three broadcast);  da = g * cond, db = g * !cond (summed to shape)
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) {
    const DType t = promote_float(a.dtype(), b.dtype());
    return where(cond, a.to(t), b.to(t));
  }
  check_same_device(a, b, "where");
  check_same_device(a, cond, "where");
  KIMI_CHECK(a.dtype() == b.dtype(), "where: a is {}, b is {}", dtype_name(a.dtype()),
             dtype_name(b.dtype()));
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape()), b.shape());
  const auto& k = kernels<ElementwiseKernels>(a, "where");
  const Tensor c = cond.detach();  // kept for the backward: the mask is cond itself, broadcast
  Tensor out = k.select(c, a, b, 0.0, shape, a.dtype(), "where");
  const Shape sa = a.shape(), sb = b.shape();
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record("where", out, {a, b}, [=, &k](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    const DType t = g[0].dtype();
    Tensor da, db;  // g where cond picked the side, 0 elsewhere, summed back to its shape
    if (need_a) da = sum_to_shape(k.select(c, g[0], Tensor(), 0.0, shape, t, "where"), sa);
    if (need_b) db = sum_to_shape(k.select(c, Tensor(), g[0], 0.0, shape, t, "where"), sb);
    return {da, db};
  });
}

// out = mask ? value : x (mask broadcast to x);  dx = g * !mask
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_same_device(x, mask, "masked_fill");
  KIMI_CHECK(broadcast_shapes(mask.shape(), x.shape()) == x.shape(),
             "masked_fill: mask {} does not broadcast to x {}", shape_str(mask.shape()),
             shape_str(x.shape()));
  const auto& k = kernels<ElementwiseKernels>(x, "masked_fill");
  const Tensor c = mask.detach();
  const Shape sx = x.shape();
  Tensor out = k.select(c, Tensor(), x, value, sx, x.dtype(), "masked_fill");
  return record("masked_fill", out, {x},
                [=, &k](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  return {k.select(c, Tensor(), g[0], 0.0, sx, g[0].dtype(), "masked_fill")};
                });
}

}  // namespace kimi
