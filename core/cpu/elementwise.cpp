// CPU kernels of the elementwise family (core/backend/elementwise_kernels.h): binary ops read
// their operands through broadcast strides (no copies), unary ops and selects run over
// contiguous buffers. The scalar functions are in elementwise.h.
#include "core/cpu/elementwise.h"

#include <cstdint>
#include <vector>

#include "core/backend/elementwise_kernels.h"
#include "core/kernels/strided.h"

namespace kimi {
namespace {

// Calls f with the op of `kind` as a functor, so that each loop below is compiled per op (a
// switch per element kept them scalar).
template <class T, class F>
void with_binary_op(BinaryKind kind, F&& f) {
  switch (kind) {
    case BinaryKind::kAdd: return f([](T x, T y) { return x + y; });
    case BinaryKind::kSub: return f([](T x, T y) { return x - y; });
    case BinaryKind::kMul: return f([](T x, T y) { return x * y; });
    case BinaryKind::kDiv: return f([](T x, T y) { return x / y; });
    case BinaryKind::kMax: return f([](T x, T y) { return x >= y ? x : y; });
  }
}

// The output's dims with both operands' strides, adjacent dims merged where every operand
// steps through them as one (a [B, T, D] * [D] product is rows of D over B T rows).
struct BroadcastDims {
  std::vector<int64_t> shape, sa, sb;
};
BroadcastDims coalesce(const Shape& shape, const std::vector<int64_t>& sa,
                       const std::vector<int64_t>& sb) {
  BroadcastDims d;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;  // a size-1 dim moves no operand
    if (!d.shape.empty() && d.sa.back() == sa[i] * shape[i] && d.sb.back() == sb[i] * shape[i]) {
      d.shape.back() *= shape[i];
      d.sa.back() = sa[i];
      d.sb.back() = sb[i];
      continue;
    }
    d.shape.push_back(shape[i]);
    d.sa.push_back(sa[i]);
    d.sb.push_back(sb[i]);
  }
  if (d.shape.empty()) d = {{1}, {0}, {0}};
  return d;
}

Tensor binary(BinaryKind kind, const Tensor& a, const Tensor& b, const Shape& shape,
              const char* name) {
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  Tensor ae = a.detach().expand(shape), be = b.detach().expand(shape);
  dispatch_float(a.dtype(), name, [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    T* o = out.data<T>();
    const T* pa = static_cast<const T*>(a.storage()->data) + a.offset();
    const T* pb = static_cast<const T*>(b.storage()->data) + b.offset();
    const int64_t n = out.numel();
    if (n == 0) return;
    const BroadcastDims d = coalesce(shape, ae.strides(), be.strides());
    const int64_t nd = static_cast<int64_t>(d.shape.size()), m = d.shape[nd - 1];
    const int64_t ia = d.sa[nd - 1], ib = d.sb[nd - 1], rows = n / m;
    with_binary_op<T>(kind, [&](auto op) {
    // Rows of the last (merged) dim, in parallel; each row's operand offsets from its index.
#pragma omp parallel for if (n > 65536) schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        int64_t rem = r, oa = 0, ob = 0;
        for (int64_t k = nd - 2; k >= 0; --k) {
          const int64_t i = rem % d.shape[k];
          rem /= d.shape[k];
          oa += i * d.sa[k];
          ob += i * d.sb[k];
        }
        T* orow = o + r * m;
        const T* ar = pa + oa;
        const T* br = pb + ob;
        if (ia == 1 && ib == 1) {
          for (int64_t j = 0; j < m; ++j) orow[j] = op(ar[j], br[j]);
        } else if (ia == 1 && ib == 0) {
          const T y = br[0];
          for (int64_t j = 0; j < m; ++j) orow[j] = op(ar[j], y);
        } else if (ia == 0 && ib == 1) {
          const T x = ar[0];
          for (int64_t j = 0; j < m; ++j) orow[j] = op(x, br[j]);
        } else {
          for (int64_t j = 0; j < m; ++j) orow[j] = op(ar[j * ia], br[j * ib]);
        }
      }
    });
  });
  return out;
}

// Computed as max(a, b) == a: the same comparison (a >= b) the forward of maximum made.
Tensor ge_mask(const Tensor& a, const Tensor& b, const Shape& shape) {
  Tensor take_a = binary(BinaryKind::kMax, a, b, shape, "maximum");
  Tensor ae = a.detach().expand(shape).contiguous();
  Tensor ma = Tensor::empty(shape, a.dtype());
  dispatch_float(a.dtype(), "maximum", [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    const T* m = take_a.data<T>();
    const T* x = ae.data<T>();
    T* o = ma.data<T>();
    for (int64_t i = 0; i < ma.numel(); ++i) o[i] = m[i] == x[i] ? 1 : 0;
  });
  return ma;
}

Tensor unary(UnaryKind kind, const Tensor& x, double p, const char* name) {
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), name, [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    cpu::unary_fwd<T>(kind, x.numel(), xc.data<T>(), y.data<T>(), p);
  });
  return y;
}

Tensor unary_backward(UnaryKind kind, const Tensor& x, const Tensor& y, const Tensor& dy, double p,
                      const char* name) {
  Tensor xc = x.detach().contiguous(), yc = y.detach().contiguous(), gc = dy.detach().contiguous();
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch_float(x.dtype(), name, [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    cpu::unary_bwd<T>(kind, x.numel(), xc.data<T>(), yc.data<T>(), gc.data<T>(), dx.data<T>(), p);
  });
  return dx;
}

// out[i] = mask[i] ? a[i] : b[i]; a or b null: the scalar `fill`. All contiguous, n long.
template <class T>
void select_rows(int64_t n, const uint8_t* mask, const T* a, const T* b, T fill, T* out) {
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = mask[i] ? (a ? a[i] : fill) : (b ? b[i] : fill);
}

Tensor select(const Tensor& cond, const Tensor& a, const Tensor& b, double fill, const Shape& shape,
              DType dtype, const char* name) {
  // mask[i] = (cond broadcast to shape)[i] != 0, for cond of any dtype.
  Tensor c = cond.detach().expand(shape).to(DType::kF64).contiguous();
  const double* cp = c.data<double>();
  std::vector<uint8_t> mask(c.numel());
  for (int64_t i = 0; i < c.numel(); ++i) mask[i] = cp[i] != 0.0;
  Tensor ac = a.defined() ? a.detach().expand(shape).contiguous() : Tensor();
  Tensor bc = b.defined() ? b.detach().expand(shape).contiguous() : Tensor();
  Tensor out = Tensor::empty(shape, dtype);
  dispatch_float(dtype, name, [&](auto tag_) {
    using T = KIMI_SCALAR_T(tag_);
    select_rows<T>(out.numel(), mask.data(), ac.defined() ? ac.data<T>() : nullptr,
                   bc.defined() ? bc.data<T>() : nullptr, static_cast<T>(fill), out.data<T>());
  });
  return out;
}

}  // namespace

void register_cpu_elementwise_kernels() {
  KernelTable<ElementwiseKernels>::set(Device::kCPU,
                                       {binary, ge_mask, unary, unary_backward, select});
}

}  // namespace kimi
