// Views: reshape, permute, narrow, expand, ... share storage with their base and are
// differentiable (each records the inverse mapping of its gradient).
#include <numeric>

#include "core/autograd/autograd.h"
#include "core/ops/ops.h"
#include "core/tensor/op_profile.h"
#include "core/tensor/tensor.h"

namespace kimi {

static int64_t wrap_dim(int64_t d, int64_t n, const char* op) {
  if (d < 0) d += n;
  KIMI_CHECK(d >= 0 && d < n, "{}: dim {} out of range for a {}-d tensor", op, d, n);
  return d;
}

static Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  return Tensor(impl);
}

// Resolves one -1 in a requested shape.
static Shape infer_shape(Shape shape, int64_t numel) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      KIMI_CHECK(infer < 0, "reshape: more than one -1 in {}", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    KIMI_CHECK(known > 0 && numel % known == 0, "reshape: cannot infer -1 in {} for {} elements",
               shape_str(shape), numel);
    shape[infer] = numel / known;
  }
  KIMI_CHECK(shape_numel(shape) == numel, "reshape: {} elements into shape {}", numel,
             shape_str(shape));
  return shape;
}

Tensor Tensor::view(const Shape& shape) const {
  KIMI_CHECK(is_contiguous(), "view() of a non-contiguous tensor {}; use reshape()", str());
  Shape s = infer_shape(shape, numel());
  Shape in = this->shape();
  Tensor out = make_view(*this, s, contiguous_strides(s), offset());
  return record("reshape", out, {*this}, [in](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].reshape(in)};
  });
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (is_contiguous()) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  const int64_t n = dim();
  KIMI_CHECK(static_cast<int64_t>(dims.size()) == n, "permute: {} dims for a {}-d tensor",
             dims.size(), n);
  Shape s(n), st(n);
  std::vector<int64_t> inverse(n, -1);
  for (int64_t i = 0; i < n; ++i) {
    int64_t d = wrap_dim(dims[i], n, "permute");
    KIMI_CHECK(inverse[d] < 0, "permute: dim {} repeated", d);
    inverse[d] = i;
    s[i] = shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = make_view(*this, s, st, offset());
  return record("permute", out, {*this},
                [inverse](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  return {g[0].permute(inverse)};
                });
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  std::vector<int64_t> dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(a, dim(), "transpose")], dims[wrap_dim(b, dim(), "transpose")]);
  return permute(dims);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  KIMI_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d],
             "narrow: [{}, {}) out of range for dim {} of size {}", start, start + length, d,
             shape()[d]);
  Shape s = shape();
  s[d] = length;
  Tensor out = make_view(*this, s, strides(), offset() + start * strides()[d]);
  Shape in = shape();
  DType dt = dtype();
  Device dev = device();
  return record("narrow", out, {*this}, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    // d input = zeros with the gradient written into the narrowed window.
    Tensor full = Tensor::zeros(in, dt, dev);
    full.narrow(d, start, length).copy_(g[0]);
    return {full};
  });
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& shape) const {
  const int64_t n = static_cast<int64_t>(shape.size());
  const int64_t lead = n - dim();
  KIMI_CHECK(lead >= 0, "expand: {} to {}", shape_str(this->shape()), shape_str(shape));
  Shape s(n), st(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t want = shape[i];
    if (i < lead) {
      s[i] = want;
      st[i] = 0;
      continue;
    }
    int64_t have = this->shape()[i - lead];
    if (want == -1) want = have;
    KIMI_CHECK(have == want || have == 1, "expand: {} to {}", shape_str(this->shape()),
               shape_str(shape));
    s[i] = want;
    st[i] = (have == want) ? strides()[i - lead] : 0;
  }
  if (s == this->shape()) return *this;
  Tensor out = make_view(*this, s, st, offset());
  Shape in = this->shape();
  return record("expand", out, {*this}, [in](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {sum_to_shape(g[0], in)};
  });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  const int64_t n = dim() + 1;
  if (d < 0) d += n;
  KIMI_CHECK(d >= 0 && d < n, "unsqueeze: dim {} for a {}-d tensor", d, dim());
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return reshape(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  KIMI_CHECK(shape()[d] == 1, "squeeze: dim {} has size {}", d, shape()[d]);
  Shape s = shape();
  s.erase(s.begin() + d);
  if (is_contiguous()) return reshape(s);
  Shape st = strides();
  st.erase(st.begin() + d);
  Tensor out = make_view(*this, s, st, offset());
  Shape in = shape();
  return record("reshape", out, {*this}, [in](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].reshape(in)};
  });
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  const int64_t n = dim();
  if (n == 0) return reshape({1});
  start = wrap_dim(start, n, "flatten");
  end = wrap_dim(end, n, "flatten");
  Shape s(shape().begin(), shape().begin() + start);
  int64_t m = 1;
  for (int64_t i = start; i <= end; ++i) m *= shape()[i];
  s.push_back(m);
  s.insert(s.end(), shape().begin() + end + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  const profile::CopyScope timed("contiguous");  // the op profiler's span, when one runs
  Tensor out = Tensor::empty(shape(), dtype(), device());
  out.copy_(*this);
  return record("contiguous", out, {*this},
                [](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0]}; });
}

// Device and dtype conversions: differentiable, the gradient converted back.
Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  const profile::CopyScope timed("to_device");  // the op profiler's span, when one runs
  Tensor out = Tensor::empty(shape(), dtype(), dev);
  out.copy_(*this);
  if (requires_grad() && grad_enabled()) {
    Device src = device();
    return record(
        "to_device", out, {*this},
        [src](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0].to(src)}; });
  }
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  const profile::CopyScope timed("to_dtype");  // the op profiler's span, when one runs
  Tensor out = Tensor::empty(shape(), t, device());
  out.copy_(*this);
  DType src = dtype();
  if (!is_floating(t) || !is_floating(src)) return out;
  return record(
      "to_dtype", out, {*this},
      [src](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0].to(src)}; });
}

}  // namespace kimi
