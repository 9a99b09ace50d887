// Elementwise ops: broadcasting binary ops and unary functions, each with its backward.
#include <algorithm>

#include "core/backend/elementwise_kernels.h"
#include "core/ops/op_util.h"
#include "core/ops/ops.h"

namespace kimi {

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    KIMI_CHECK(da == db || da == 1 || db == 1, "cannot broadcast shapes {} and {}", shape_str(a),
               shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

DType promote_float(DType a, DType b) {
  KIMI_CHECK(is_floating(a) && is_floating(b), "no float promotion between {} and {}",
             dtype_name(a), dtype_name(b));
  if (a == b) return a;
  if (a == DType::kF64 || b == DType::kF64) return DType::kF64;
  return DType::kF32;  // F32 with a 16-bit type, or BF16 with F16
}

// Mixed float dtypes: both operands through the differentiable to(), whose backward hands each
// input its gradient in its own dtype. The kernels then see one dtype, as before.
template <class Op>
static Tensor promoted(Op op, const Tensor& a, const Tensor& b) {
  const DType t = promote_float(a.dtype(), b.dtype());
  return op(a.to(t), b.to(t));
}

// Checks shared by the binary ops, then the kernel of the operands' device.
static Tensor binary_forward(BinaryKind kind, const Tensor& a, const Tensor& b, const char* name) {
  check_same_device(a, b, name);
  KIMI_CHECK(a.dtype() == b.dtype(), "{}: dtypes {} and {} differ", name, dtype_name(a.dtype()),
             dtype_name(b.dtype()));
  Shape shape = broadcast_shapes(a.shape(), b.shape());
  return kernels<ElementwiseKernels>(a, name).binary(kind, a, b, shape, name);
}

Tensor add(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) return promoted(add, a, b);
  Shape sa = a.shape(), sb = b.shape();
  return record("add", binary_forward(BinaryKind::kAdd, a, b, "add"), {a, b},
                [sa, sb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  return {sum_to_shape(g[0], sa), sum_to_shape(g[0], sb)};
                });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) return promoted(sub, a, b);
  Shape sa = a.shape(), sb = b.shape();
  return record("sub", binary_forward(BinaryKind::kSub, a, b, "sub"), {a, b},
                [sa, sb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  return {sum_to_shape(g[0], sa), sum_to_shape(neg(g[0]), sb)};
                });
}

// da = g * b, db = g * a
Tensor mul(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) return promoted(mul, a, b);
  return record("mul", binary_forward(BinaryKind::kMul, a, b, "mul"), {a, b},
                [a, b](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  Tensor da = a.requires_grad() ? sum_to_shape(mul(g[0], b), a.shape()) : Tensor();
                  Tensor db = b.requires_grad() ? sum_to_shape(mul(g[0], a), b.shape()) : Tensor();
                  return {da, db};
                });
}

// da = g / b, db = -g a / b^2
Tensor div(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) return promoted(div, a, b);
  return record("div", binary_forward(BinaryKind::kDiv, a, b, "div"), {a, b},
                [a, b](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  Tensor da = a.requires_grad() ? sum_to_shape(div(g[0], b), a.shape()) : Tensor();
                  Tensor db;
                  if (b.requires_grad())
                    db = sum_to_shape(neg(div(mul(g[0], a), mul(b, b))), b.shape());
                  return {da, db};
                });
}

// The gradient goes to a where a >= b, else to b (one side only, as the forward picks one).
Tensor maximum(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) return promoted(maximum, a, b);
  return record("maximum", binary_forward(BinaryKind::kMax, a, b, "maximum"), {a, b},
                [a, b](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  const auto& k = kernels<ElementwiseKernels>(a, "maximum");
                  Tensor ma = k.ge_mask(a, b, g[0].shape());
                  Tensor ga = mul(g[0], ma);
                  Tensor gb = sub(g[0], ga);
                  return {sum_to_shape(ga, a.shape()), sum_to_shape(gb, b.shape())};
                });
}

// dx = dy * f'(x), one fused kernel from x and the saved output y.
static Tensor unary(UnaryKind kind, const Tensor& x, const char* name, double p = 0.0) {
  const auto& k = kernels<ElementwiseKernels>(x, name);
  Tensor y = k.unary(kind, x, p, name);
  Tensor y_saved = y;  // saved before record() gives the output its graph node
  return record(
      name, y, {x},
      [&k, kind, x, y_saved, p, name](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        return {k.unary_backward(kind, x.detach(), y_saved, g[0], p, name)};
      });
}

Tensor neg(const Tensor& x) { return unary(UnaryKind::kNeg, x, "neg"); }
Tensor exp(const Tensor& x) { return unary(UnaryKind::kExp, x, "exp"); }
Tensor log(const Tensor& x) { return unary(UnaryKind::kLog, x, "log"); }
Tensor sqrt(const Tensor& x) { return unary(UnaryKind::kSqrt, x, "sqrt"); }
Tensor rsqrt(const Tensor& x) { return unary(UnaryKind::kRsqrt, x, "rsqrt"); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryKind::kSigmoid, x, "sigmoid"); }
Tensor silu(const Tensor& x) { return unary(UnaryKind::kSilu, x, "silu"); }
Tensor softplus(const Tensor& x) { return unary(UnaryKind::kSoftplus, x, "softplus"); }
Tensor tanh(const Tensor& x) { return unary(UnaryKind::kTanh, x, "tanh"); }
Tensor relu(const Tensor& x) { return unary(UnaryKind::kRelu, x, "relu"); }
Tensor abs(const Tensor& x) { return unary(UnaryKind::kAbs, x, "abs"); }
Tensor add_scalar(const Tensor& x, double s) {
  return unary(UnaryKind::kAddScalar, x, "add_scalar", s);
}
Tensor mul_scalar(const Tensor& x, double s) {
  return unary(UnaryKind::kMulScalar, x, "mul_scalar", s);
}
Tensor pow_scalar(const Tensor& x, double p) {
  return unary(UnaryKind::kPowScalar, x, "pow_scalar", p);
}

}  // namespace kimi
