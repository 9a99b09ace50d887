// Reductions and scans: sum, mean, max, cumsum, argmax.
#include <algorithm>
#include <numeric>

#include "core/backend/reduce_kernels.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace kimi {

// Normalised, sorted, unique reduction dims (empty = all).
static std::vector<int64_t> reduce_dims(const Tensor& x, const std::vector<int64_t>& dims) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    out.resize(x.dim());
    std::iota(out.begin(), out.end(), 0);
    return out;
  }
  for (int64_t d : dims) out.push_back(wrap_dim(d, x.dim(), "sum"));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

static Shape kept_shape(const Shape& s, const std::vector<int64_t>& dims) {
  Shape k = s;
  for (int64_t d : dims) k[d] = 1;
  return k;
}

// dx = g broadcast back over the reduced dims
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  std::vector<int64_t> dims = reduce_dims(x, dims_in);
  Shape kshape = kept_shape(x.shape(), dims);
  Tensor out = kernels<ReduceKernels>(x, "sum").sum(x, dims, kshape);
  Shape final_shape;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (keepdim || !std::binary_search(dims.begin(), dims.end(), d))
      final_shape.push_back(kshape[d]);
  Shape in = x.shape();
  Tensor result =
      record("sum", out, {x}, [in, kshape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        return {g[0].reshape(kshape).expand(in).contiguous()};
      });
  return keepdim ? result : result.reshape(final_shape);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  int64_t count = 1;
  for (int64_t d : reduce_dims(x, dims)) count *= x.size(d);
  return mul_scalar(sum(x, dims, keepdim), 1.0 / static_cast<double>(std::max<int64_t>(count, 1)));
}

// dx = g at the first index holding the max along dim, 0 elsewhere
Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  dim = wrap_dim(dim, x.dim(), "max");
  KIMI_CHECK(x.size(dim) > 0, "max over an empty dim");
  const auto& k = kernels<ReduceKernels>(x, "max");
  Tensor index;
  Tensor values = k.max(x, dim, &index);
  const Shape in = x.shape();
  Tensor result = record("max", values, {x},
                         [&k, index, in, dim](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                           return {k.max_backward(g[0], index, in, dim)};
                         });
  return keepdim ? result : result.squeeze(dim);
}

// Inclusive prefix sum along dim;  dx = reverse cumsum of dy
Tensor cumsum(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "cumsum");
  const auto& k = kernels<ReduceKernels>(x, "cumsum");
  Tensor out = k.cumsum(x, dim, /*reverse=*/false);
  return record("cumsum", out, {x}, [&k, dim](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {k.cumsum(g[0], dim, /*reverse=*/true)};
  });
}

// No gradient: an index.
Tensor argmax_lastdim(const Tensor& x) {
  KIMI_CHECK(x.dim() >= 1, "argmax_lastdim: needs at least 1 dim, got {}", x.str());
  return kernels<ReduceKernels>(x, "argmax").argmax_lastdim(x);
}

}  // namespace kimi
