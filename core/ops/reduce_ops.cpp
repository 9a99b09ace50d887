// Reductions and scans: sum, mean, max, cumsum, argmax.
#include <algorithm>
#include <numeric>

#include "core/ops/ops.h"
#include "core/ops/op_util.h"
#ifdef KIMI_LAB_CUDA
#include "core/cuda/reduce/reduce_cuda.h"
#endif

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

// Sums over `dims` (normalised, sorted) on the CPU, shaped kshape.
static Tensor sum_cpu(const Tensor& x, const std::vector<int64_t>& dims, const Shape& kshape) {
  check_cpu(x, "sum");
  // Move the reduced dims last, then each output element sums one contiguous row.
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) perm.push_back(d);
  int64_t m = 1;
  for (int64_t d : dims) {
    perm.push_back(d);
    m *= x.size(d);
  }
  Tensor out = Tensor::empty(kshape, x.dtype(), x.device());
  {
    NoGradGuard no_grad;
    Tensor xp = x.permute(perm).contiguous();
    const int64_t rows = out.numel();
    dispatch_float(x.dtype(), "sum", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
      const scalar_t* p = xp.data<scalar_t>();
      scalar_t* o = out.data<scalar_t>();
#pragma omp parallel for if (rows * m > 65536) schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        double acc = 0;  // double accumulation keeps float sums of long rows accurate
        for (int64_t j = 0; j < m; ++j) acc += p[r * m + j];
        o[r] = static_cast<scalar_t>(acc);
      }
    });
  }
  return out;
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  std::vector<int64_t> dims = reduce_dims(x, dims_in);
  Shape kshape = kept_shape(x.shape(), dims);
  Tensor out;
#ifdef KIMI_LAB_CUDA
  if (x.device() == Device::kCUDA) out = cuda_sum(x, dims, kshape);
#endif
  if (!out.defined()) out = sum_cpu(x, dims, kshape);
  Shape final_shape;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (keepdim || !std::binary_search(dims.begin(), dims.end(), d)) final_shape.push_back(kshape[d]);
  Shape in = x.shape();
  Tensor result = record("sum", out, {x}, [in, kshape](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {g[0].reshape(kshape).expand(in).contiguous()};
  });
  return keepdim ? result : result.reshape(final_shape);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  int64_t count = 1;
  for (int64_t d : reduce_dims(x, dims)) count *= x.size(d);
  return mul_scalar(sum(x, dims, keepdim), 1.0 / static_cast<double>(std::max<int64_t>(count, 1)));
}

// Gradient to the first index holding the max.
Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  dim = wrap_dim(dim, x.dim(), "max");
  KIMI_CHECK(x.size(dim) > 0, "max over an empty dim");
#ifdef KIMI_LAB_CUDA
  if (x.device() == Device::kCUDA) {
    CudaMax m = cuda_max(x, dim);
    Shape in = x.shape();
    Tensor index = m.index;
    Tensor result = record("max", m.values, {x}, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {cuda_max_backward(g[0], index, in, dim)};
    });
    return keepdim ? result : result.squeeze(dim);
  }
#endif
  check_cpu(x, "max");
  AxisSplit a = split_at(x.shape(), dim);
  Tensor xc = x.detach().contiguous();
  Shape kshape = x.shape();
  kshape[dim] = 1;
  Tensor out = Tensor::empty(kshape, x.dtype());
  std::vector<int64_t> arg(a.outer * a.inner);
  dispatch_float(x.dtype(), "max", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* p = xc.data<scalar_t>();
    scalar_t* o = out.data<scalar_t>();
    for (int64_t i = 0; i < a.outer; ++i)
      for (int64_t k = 0; k < a.inner; ++k) {
        int64_t best = 0;
        for (int64_t j = 1; j < a.n; ++j)
          if (p[(i * a.n + j) * a.inner + k] > p[(i * a.n + best) * a.inner + k]) best = j;
        arg[i * a.inner + k] = best;
        o[i * a.inner + k] = p[(i * a.n + best) * a.inner + k];
      }
  });
  Shape in = x.shape();
  Tensor result = record("max", out, {x}, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gc = g[0].contiguous();
    Tensor dx = Tensor::zeros(in, gc.dtype());
    dispatch_float(gc.dtype(), "max", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
      const scalar_t* gp = gc.data<scalar_t>();
      scalar_t* d = dx.data<scalar_t>();
      for (int64_t i = 0; i < a.outer; ++i)
        for (int64_t k = 0; k < a.inner; ++k)
          d[(i * a.n + arg[i * a.inner + k]) * a.inner + k] = gp[i * a.inner + k];
    });
    return {dx};
  });
  return keepdim ? result : result.squeeze(dim);
}

// Inclusive prefix sum along dim; reverse=true sums from the end (the backward of cumsum).
static Tensor cumsum_raw(const Tensor& x, int64_t dim, bool reverse) {
#ifdef KIMI_LAB_CUDA
  if (x.device() == Device::kCUDA) return cuda_cumsum(x, dim, reverse);
#endif
  check_cpu(x, "cumsum");
  AxisSplit a = split_at(x.shape(), dim);
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "cumsum", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* p = xc.data<scalar_t>();
    scalar_t* o = out.data<scalar_t>();
    for (int64_t i = 0; i < a.outer; ++i)
      for (int64_t k = 0; k < a.inner; ++k) {
        scalar_t acc = 0;
        for (int64_t jj = 0; jj < a.n; ++jj) {
          int64_t j = reverse ? a.n - 1 - jj : jj;
          acc += p[(i * a.n + j) * a.inner + k];
          o[(i * a.n + j) * a.inner + k] = acc;
        }
      }
  });
  return out;
}

// dx = reverse cumsum of dy
Tensor cumsum(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "cumsum");
  Tensor out;
  {
    NoGradGuard no_grad;
    out = cumsum_raw(x, dim, false);
  }
  return record("cumsum", out, {x}, [dim](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    return {cumsum_raw(g[0], dim, true)};
  });
}

Tensor argmax_lastdim(const Tensor& x) {
#ifdef KIMI_LAB_CUDA
  if (x.device() == Device::kCUDA) return cuda_argmax_lastdim(x);
#endif
  check_cpu(x, "argmax");
  Tensor xc = x.detach().contiguous();
  const int64_t n = x.size(-1), rows = x.numel() / std::max<int64_t>(n, 1);
  Shape s = x.shape();
  s.pop_back();
  Tensor out = Tensor::empty(s, DType::kI32);
  int32_t* o = out.data<int32_t>();
  dispatch_float(x.dtype(), "argmax", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* p = xc.data<scalar_t>();
    for (int64_t r = 0; r < rows; ++r) {
      const scalar_t* row = p + r * n;
      o[r] = static_cast<int32_t>(std::max_element(row, row + n) - row);
    }
  });
  return out;
}

}  // namespace kimi
