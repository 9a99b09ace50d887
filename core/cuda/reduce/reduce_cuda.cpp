// The CUDA table of the reduction family (core/backend/reduce_kernels.h) over the kernels of
// reduce.h: sum reads x through its strides (no copy); max, argmax and cumsum make x
// contiguous and view it as [outer, n, inner] around the dim.
#include "core/backend/reduce_kernels.h"
#include "core/cuda/reduce/reduce.h"
#include "core/cuda/runtime/cuda_tensor.h"

namespace kimi {
namespace {

cuda::ElemType elem(const Tensor& t) { return elem_type(t.dtype()); }

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, const Shape& kshape) {
  check_cuda_float(x, "sum");
  Tensor out = Tensor::empty(kshape, x.dtype(), Device::kCUDA);
  uint32_t mask = 0;
  for (int64_t d : dims) mask |= 1u << d;
  cuda::sum(cuda_view(x), mask, out.raw_data());
  return out;
}

Tensor max(const Tensor& x, int64_t dim, Tensor* index) {
  check_cuda_float(x, "max");
  const AxisSplit a = split_at(x.shape(), dim);
  Tensor xc = x.detach().contiguous();
  Shape kshape = x.shape();
  kshape[dim] = 1;
  Tensor values = Tensor::empty(kshape, x.dtype(), Device::kCUDA);
  *index = Tensor::empty({a.outer * a.inner}, DType::kI64, Device::kCUDA);
  cuda::argmax(elem(x), a.outer, a.n, a.inner, xc.raw_data(), values.raw_data(),
               cuda::ElemType::kI64, index->raw_data());
  return values;
}

Tensor max_backward(const Tensor& g, const Tensor& index, const Shape& in, int64_t dim) {
  const AxisSplit a = split_at(in, dim);
  Tensor gc = g.detach().contiguous();
  Tensor dx = Tensor::empty(in, gc.dtype(), Device::kCUDA);
  cuda::max_backward(elem(gc), a.outer, a.n, a.inner, index.data<int64_t>(), gc.raw_data(),
                     dx.raw_data());
  return dx;
}

Tensor cumsum(const Tensor& x, int64_t dim, bool reverse) {
  check_cuda_float(x, "cumsum");
  const AxisSplit a = split_at(x.shape(), dim);
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), Device::kCUDA);
  cuda::cumsum(elem(x), a.outer, a.n, a.inner, xc.raw_data(), out.raw_data(), reverse);
  return out;
}

Tensor argmax_lastdim(const Tensor& x) {
  check_cuda_float(x, "argmax");
  Tensor xc = x.detach().contiguous();
  const int64_t n = x.size(-1);
  Shape s = x.shape();
  s.pop_back();
  Tensor out = Tensor::empty(s, DType::kI32, Device::kCUDA);
  if (out.numel() == 0) return out;
  KIMI_CHECK(n > 0, "argmax_lastdim over an empty dim ({})", x.str());
  cuda::argmax(elem(x), out.numel(), n, 1, xc.raw_data(), nullptr, cuda::ElemType::kI32,
               out.raw_data());
  return out;
}

}  // namespace

void register_cuda_reduce_kernels() {
  KernelTable<ReduceKernels>::set(Device::kCUDA, {sum, max, max_backward, cumsum, argmax_lastdim});
}

}  // namespace kimi
