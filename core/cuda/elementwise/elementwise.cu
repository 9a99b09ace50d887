// Elementwise kernels (elementwise.h). The op is a runtime switch, uniform across the grid, so
// one kernel per storage type serves every function (memory-bound: the branch is free, and the
// build stays small). Contiguous buffers go 16 bytes per load/store when aligned; strided
// operands unravel the collapsed shape in 32-bit index math when it fits.
#include <type_traits>

#include "core/cuda/elementwise/elementwise.h"
#include "core/cuda/runtime/op_common.cuh"

namespace kimi::cuda {
namespace {

using namespace op_detail;

// Same formulas as core/cpu/elementwise.h, in the compute type A.
template <class A>
__device__ __forceinline__ A sigmoid_of(A x) {
  return x >= A(0) ? A(1) / (A(1) + m_exp(-x)) : m_exp(x) / (A(1) + m_exp(x));
}

template <class A>
__device__ __forceinline__ A unary_value(UnaryOp k, A x, A p) {
  switch (k) {
    case UnaryOp::kNeg: return -x;
    case UnaryOp::kExp: return m_exp(x);
    case UnaryOp::kLog: return m_log(x);
    case UnaryOp::kSqrt: return m_sqrt(x);
    case UnaryOp::kRsqrt: return A(1) / m_sqrt(x);
    case UnaryOp::kSigmoid: return sigmoid_of(x);
    case UnaryOp::kSilu: return x * sigmoid_of(x);
    case UnaryOp::kSoftplus: return x > A(20) ? x : m_log1p(m_exp(x));
    case UnaryOp::kTanh: return m_tanh(x);
    case UnaryOp::kRelu: return x > A(0) ? x : A(0);
    case UnaryOp::kAbs: return m_abs(x);
    case UnaryOp::kAddScalar: return x + p;
    case UnaryOp::kMulScalar: return x * p;
    case UnaryOp::kPowScalar: return m_pow(x, p);
  }
  return x;
}

template <class A>
__device__ __forceinline__ A unary_derivative(UnaryOp k, A x, A y, A p) {
  switch (k) {
    case UnaryOp::kNeg: return A(-1);
    case UnaryOp::kExp: return y;
    case UnaryOp::kLog: return A(1) / x;
    case UnaryOp::kSqrt: return A(0.5) / y;
    case UnaryOp::kRsqrt: return A(-0.5) * y * y * y;
    case UnaryOp::kSigmoid: return y * (A(1) - y);
    case UnaryOp::kSilu: {
      const A s = sigmoid_of(x);
      return s * (A(1) + x * (A(1) - s));
    }
    case UnaryOp::kSoftplus: return x > A(20) ? A(1) : sigmoid_of(x);
    case UnaryOp::kTanh: return A(1) - y * y;
    case UnaryOp::kRelu: return x > A(0) ? A(1) : A(0);
    case UnaryOp::kAbs: return x > A(0) ? A(1) : (x < A(0) ? A(-1) : A(0));
    case UnaryOp::kAddScalar: return A(1);
    case UnaryOp::kMulScalar: return p;
    case UnaryOp::kPowScalar: return p * m_pow(x, p - A(1));
  }
  return A(0);
}

template <class A>
__device__ __forceinline__ A binary_value(BinaryOp k, A a, A b) {
  switch (k) {
    case BinaryOp::kAdd: return a + b;
    case BinaryOp::kSub: return a - b;
    case BinaryOp::kMul: return a * b;
    case BinaryOp::kDiv: return a / b;
    case BinaryOp::kMax: return a >= b ? a : b;
    case BinaryOp::kGeMask: return a >= b ? A(1) : A(0);
  }
  return a;
}

// 16 bytes of T: the unit of the vectorised path.
template <class T>
struct alignas(16) Vec {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// out[i] = f(in_0[i], ..., in_{K-1}[i]) in the compute type over n contiguous elements: one
// 16-byte load per operand for each of the first n / kN groups when `vec` (all aligned), then
// the scalar tail.
template <class T, int K, class F>
__device__ __forceinline__ void map_contiguous(int64_t n, bool vec, const T* const (&in)[K],
                                               T* __restrict__ out, F f) {
  using V = Vec<T>;
  using A = acc_t<T>;
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  const int64_t nv = vec ? n / V::kN : 0;
  for (int64_t i = tid; i < nv; i += step) {
    V v[K], o;
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = reinterpret_cast<const V*>(in[k])[i];
#pragma unroll
    for (int e = 0; e < V::kN; ++e) {
      A a[K];
#pragma unroll
      for (int k = 0; k < K; ++k) a[k] = to_acc<A>(v[k].v[e]);
      o.v[e] = from_acc<T>(f(a));
    }
    reinterpret_cast<V*>(out)[i] = o;
  }
  for (int64_t i = nv * V::kN + tid; i < n; i += step) {
    A a[K];
#pragma unroll
    for (int k = 0; k < K; ++k) a[k] = to_acc<A>(in[k][i]);
    out[i] = from_acc<T>(f(a));
  }
}

template <class T>
__global__ void unary_fwd_kernel(UnaryOp op, int64_t n, bool vec, const T* __restrict__ x,
                                 T* __restrict__ y, acc_t<T> p) {
  using A = acc_t<T>;
  const T* const in[1] = {x};
  map_contiguous<T, 1>(n, vec, in, y, [&](const A(&v)[1]) { return unary_value(op, v[0], p); });
}

// inputs x, y = f(x), dy
template <class T>
__global__ void unary_bwd_kernel(UnaryOp op, int64_t n, bool vec, const T* __restrict__ x,
                                 const T* __restrict__ y, const T* __restrict__ dy,
                                 T* __restrict__ dx, acc_t<T> p) {
  using A = acc_t<T>;
  const T* const in[3] = {x, y, dy};
  map_contiguous<T, 3>(n, vec, in, dx,
                       [&](const A(&v)[3]) { return v[2] * unary_derivative(op, v[0], v[1], p); });
}

template <class T>
__global__ void binary_contig_kernel(BinaryOp op, int64_t n, bool vec, const T* __restrict__ a,
                                     const T* __restrict__ b, T* __restrict__ out) {
  using A = acc_t<T>;
  const T* const in[2] = {a, b};
  map_contiguous<T, 2>(n, vec, in, out,
                       [&](const A(&v)[2]) { return binary_value(op, v[0], v[1]); });
}

template <class T, class I>
__global__ void binary_strided_kernel(BinaryOp op, I n, Indexer<2, I> ix, const T* __restrict__ a,
                                      const T* __restrict__ b, T* __restrict__ out) {
  using A = acc_t<T>;
  for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    I off[2];
    ix.offsets(i, off);
    out[i] = from_acc<T>(binary_value(op, to_acc<A>(a[off[0]]), to_acc<A>(b[off[1]])));
  }
}

// a or b null: the scalar fill.
template <class T, class C, class I>
__global__ void select_kernel(I n, Indexer<3, I> ix, const C* __restrict__ cond,
                              const T* __restrict__ a, const T* __restrict__ b, acc_t<T> fill_value,
                              T* __restrict__ out) {
  const T fill = from_acc<T>(fill_value);
  for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    I off[3];
    ix.offsets(i, off);
    if (nonzero(cond[off[0]]))
      out[i] = a ? a[off[1]] : fill;
    else
      out[i] = b ? b[off[2]] : fill;
  }
}

template <int N>
Dims<N> dims_of(const StridedView& out, const StridedView* const (&ops)[N]) {
  Dims<N> d;
  d.ndim = out.ndim;
  for (int i = 0; i < out.ndim; ++i) {
    d.shape[i] = out.shape[i];
    for (int k = 0; k < N; ++k) d.strides[k][i] = ops[k]->data ? ops[k]->strides[i] : 0;
  }
  d.collapse();
  return d;
}

void require_same_shape(const StridedView& out, const StridedView& v, const char* what) {
  if (!v.data) return;
  KIMI_CUDA_REQUIRE(v.ndim == out.ndim, what);
  for (int i = 0; i < out.ndim; ++i) KIMI_CUDA_REQUIRE(v.shape[i] == out.shape[i], what);
}

// Calls f(I{}) with uint32_t when the collapsed view fits 32-bit index math, else int64_t.
template <int N, class F>
void with_index_type(const Dims<N>& d, F&& f) {
  if (d.fits_u32())
    f(uint32_t{});
  else
    f(int64_t{});
}

}  // namespace

void unary_forward(UnaryOp op, ElemType t, int64_t n, const void* x, void* y, double p) {
  if (n <= 0) return;
  dispatch_float(t, "unary_forward: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    const bool vec = aligned16(x) && aligned16(y);
    const int64_t work = vec ? ceil_div(n, Vec<T>::kN) : n;
    unary_fwd_kernel<T><<<grid_for(work, 256), 256, 0, stream()>>>(
        op, n, vec, static_cast<const T*>(x), static_cast<T*>(y), static_cast<acc_t<T>>(p));
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void unary_backward(UnaryOp op, ElemType t, int64_t n, const void* x, const void* y, const void* dy,
                    void* dx, double p) {
  if (n <= 0) return;
  dispatch_float(t, "unary_backward: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    const bool vec = aligned16(x) && aligned16(y) && aligned16(dy) && aligned16(dx);
    const int64_t work = vec ? ceil_div(n, Vec<T>::kN) : n;
    unary_bwd_kernel<T><<<grid_for(work, 256), 256, 0, stream()>>>(
        op, n, vec, static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const T*>(dy),
        static_cast<T*>(dx), static_cast<acc_t<T>>(p));
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void binary(BinaryOp op, const StridedView& out, const StridedView& a, const StridedView& b) {
  KIMI_CUDA_REQUIRE(out.type == a.type && out.type == b.type, "binary: operand types differ");
  KIMI_CUDA_REQUIRE(out.contiguous() && a.data && b.data, "binary: bad operands");
  require_same_shape(out, a, "binary: a's shape differs from out's");
  require_same_shape(out, b, "binary: b's shape differs from out's");
  const int64_t n = out.numel();
  if (n == 0) return;
  const StridedView* const ops[2] = {&a, &b};
  const Dims<2> d = dims_of(out, ops);
  dispatch_float(out.type, "binary: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = static_cast<const T*>(a.data);
    const T* pb = static_cast<const T*>(b.data);
    T* po = static_cast<T*>(out.data);
    if (d.ndim == 1 && d.strides[0][0] == 1 && d.strides[1][0] == 1) {
      const bool vec = aligned16(pa) && aligned16(pb) && aligned16(po);
      const int64_t work = vec ? ceil_div(n, Vec<T>::kN) : n;
      binary_contig_kernel<T><<<grid_for(work, 256), 256, 0, stream()>>>(op, n, vec, pa, pb, po);
      return;
    }
    with_index_type(d, [&](auto itag) {
      using I = decltype(itag);
      binary_strided_kernel<T, I><<<grid_for(n, 256), 256, 0, stream()>>>(
          op, static_cast<I>(n), Indexer<2, I>::make(d), pa, pb, po);
    });
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

void select(const StridedView& out, const StridedView& cond, const StridedView& a,
            const StridedView& b, double fill) {
  KIMI_CUDA_REQUIRE(out.contiguous() && cond.data, "select: bad operands");
  KIMI_CUDA_REQUIRE((!a.data || a.type == out.type) && (!b.data || b.type == out.type),
                    "select: operand types differ");
  require_same_shape(out, cond, "select: cond's shape differs from out's");
  require_same_shape(out, a, "select: a's shape differs from out's");
  require_same_shape(out, b, "select: b's shape differs from out's");
  const int64_t n = out.numel();
  if (n == 0) return;
  const StridedView* const ops[3] = {&cond, &a, &b};
  const Dims<3> d = dims_of(out, ops);
  dispatch_float(out.type, "select: F32, F64 or BF16", [&](auto tag) {
    using T = decltype(tag);
    dispatch_any(cond.type, [&](auto ctag) {
      using C = decltype(ctag);
      with_index_type(d, [&](auto itag) {
        using I = decltype(itag);
        select_kernel<T, C, I><<<grid_for(n, 256), 256, 0, stream()>>>(
            static_cast<I>(n), Indexer<3, I>::make(d), static_cast<const C*>(cond.data),
            static_cast<const T*>(a.data), static_cast<const T*>(b.data),
            static_cast<acc_t<T>>(fill), static_cast<T*>(out.data));
      });
    });
  });
  KIMI_CUDA_CHECK_LAUNCH();
}

}  // namespace kimi::cuda
