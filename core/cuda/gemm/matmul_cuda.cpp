// The CUDA table of the matrix products (core/backend/product_kernels.h) through cuBLAS
// (core/cuda/gemm/gemm.h). F32 tensors multiply with the operand precision of the op's
// OpContext (fp32 | tf32 | bf16, fp32 accumulation); BF16 tensors in bf16 with fp32
// accumulation; F64 in fp64. Strided inputs are read in place where cuBLAS can (row- or
// column-major matrices, batch dims that fold into one stride), else copied contiguous.
#include <algorithm>
#include <optional>

#include "core/backend/product_kernels.h"
#include "core/cuda/gemm/gemm.h"
#include "core/cuda/runtime/cuda_tensor.h"
#include "core/cuda/sequence/sequence.h"

namespace kimi {
namespace {

// The operand precision the op captured at forward time (never the global setting: the
// backward must use the forward's).
cuda::GemmMath gemm_math(const OpContext& ctx) {
  switch (ctx.precision) {
    case ComputePrecision::kFP32: return cuda::GemmMath::kFP32;
    case ComputePrecision::kTF32: return cuda::GemmMath::kTF32;
    case ComputePrecision::kBF16: return cuda::GemmMath::kBF16;
  }
  return cuda::GemmMath::kFP32;
}

// How cuBLAS reads t [..., R, C] in place: each matrix row-major (unit column stride) or
// column-major (unit row stride, so the stored matrix is t^T) with a leading dimension cuBLAS
// accepts, and the batch dims folding into one stride (size-1 dims ignored). nullopt otherwise,
// e.g. for a broadcast (stride 0) row or column.
std::optional<cuda::GemmOperand> layout_of(const Tensor& t) {
  const int64_t nd = t.dim(), R = t.size(-2), C = t.size(-1);
  const int64_t sr = t.strides()[nd - 2], sc = t.strides()[nd - 1];
  cuda::GemmOperand op;
  op.data = t.raw_data();
  if ((C == 1 || sc == 1) && (R == 1 || sr >= std::max<int64_t>(C, 1))) {
    op.ld = R == 1 ? std::max<int64_t>(C, 1) : sr;
  } else if ((R == 1 || sr == 1) && (C == 1 || sc >= std::max<int64_t>(R, 1))) {
    op.trans = true;  // stored [C, R] row-major, rows sc apart
    op.ld = C == 1 ? std::max<int64_t>(R, 1) : sc;
  } else {
    return std::nullopt;
  }
  int64_t batch = 1;
  for (int64_t d = nd - 3; d >= 0; --d) {
    const int64_t n = t.size(d), s = t.strides()[d];
    if (n == 1) continue;
    if (batch == 1)
      op.batch_stride = s;
    else if (s != op.batch_stride * batch)
      return std::nullopt;
    batch *= n;
  }
  return op;
}

// An operand with the tensor that owns its memory (t itself, or a contiguous copy of it).
struct Operand {
  Tensor keep;
  cuda::GemmOperand op;
};

Operand operand(const Tensor& t) {
  if (t.numel() == 0) return {t, cuda::GemmOperand{t.raw_data(), false, 1, 0}};  // never read
  if (auto op = layout_of(t)) return {t, *op};
  Tensor c = t.contiguous();
  auto op = layout_of(c);
  KIMI_CHECK(op.has_value(), "matmul: no cuBLAS layout for contiguous {}", c.str());
  return {c, *op};
}

cuda::GemmOperand transposed(cuda::GemmOperand op) {
  op.trans = !op.trans;
  return op;
}

// Whether a batch of [R, C] matrices is also one [batch * R, C] matrix (rows evenly spaced).
bool folds(const cuda::GemmOperand& op, int64_t batch, int64_t R) {
  return batch == 1 || (!op.trans && op.batch_stride == R * op.ld);
}

// C [batch, M, N] (fresh, contiguous) = op(A) op(B) + beta C. A B shared by the batch, with A's
// matrices stacked rows, folds the batch into M: one large GEMM instead of many small ones.
void gemm_into(const Tensor& C, cuda::GemmMath math, int64_t batch, int64_t M, int64_t N, int64_t K,
               const cuda::GemmOperand& A, const cuda::GemmOperand& B, double beta) {
  if (C.numel() == 0) return;
  if (K == 0) {  // an empty sum: cuBLAS is not asked about zero-width operands
    if (beta == 0) Tensor(C).zero_();
    return;
  }
  const int64_t stride_c = M * N;
  if (batch > 1 && B.batch_stride == 0 && folds(A, batch, M)) {
    M *= batch;
    batch = 1;
  }
  cuda::gemm(elem_type(C.dtype()), math, batch, M, N, K, 1.0, A, B, beta, C.raw_data(), N,
             stride_c);
}

// The upstream gradient, detached, on the GPU, in dtype dt.
Tensor grad_as(const Tensor& g, DType dt) {
  Tensor r = g.detach();
  if (r.device() != Device::kCUDA) r = r.to(Device::kCUDA);
  return r.dtype() == dt ? r : r.to(dt);
}

// The sizes of a [..., M, K] @ b [K, N] or b [..., K, N].
struct MatmulDims {
  int64_t M, K, N, batch;
  bool shared_b;
};
MatmulDims matmul_dims(const Tensor& a, const Tensor& b) {
  int64_t batch = 1;
  for (int64_t d = 0; d + 2 < a.dim(); ++d) batch *= a.size(d);
  return {a.size(-2), a.size(-1), b.size(-1), batch, b.dim() == 2};
}

// C = A B
Tensor matmul(const OpContext& ctx, const Tensor& a, const Tensor& b) {
  const DType dt = a.dtype();
  check_cuda_float(dt, "matmul");
  const MatmulDims d = matmul_dims(a, b);
  const Operand A = operand(a.detach()), B = operand(b.detach());
  Shape out_shape(a.shape().begin(), a.shape().end() - 1);
  out_shape.push_back(d.N);
  Tensor out = Tensor::empty(out_shape, dt, Device::kCUDA);
  gemm_into(out, gemm_math(ctx), d.batch, d.M, d.N, d.K, A.op, B.op, 0.0);
  return out;
}

// dA = dC B^T;  dB = A^T dC (summed over the batch when B is a shared 2-d matrix). The
// operands are laid out again as in the forward (in place, or a contiguous copy).
void matmul_backward(const OpContext& ctx, const Tensor& a, const Tensor& b, const Tensor& g,
                     bool need_a, bool need_b, Tensor* da, Tensor* db) {
  const DType dt = a.dtype();
  const auto [M, K, N, batch, shared_b] = matmul_dims(a, b);
  const cuda::GemmMath math = gemm_math(ctx);
  const Operand G = operand(grad_as(g, dt));
  if (need_a) {
    const Operand B = operand(b.detach());
    *da = Tensor::empty(a.shape(), dt, Device::kCUDA);
    gemm_into(*da, math, batch, M, K, N, G.op, transposed(B.op), 0.0);
  }
  if (need_b) {
    const Operand A = operand(a.detach());
    *db = Tensor::empty(b.shape(), dt, Device::kCUDA);
    if (!shared_b) {
      gemm_into(*db, math, batch, K, N, M, transposed(A.op), G.op, 0.0);
    } else {
      // sum_i A[i]^T dC[i] = A^T dC with the batch folded into the rows: [batch*M, K], [batch*M, N]
      const Operand Af = folds(A.op, batch, M) ? A : operand(A.keep.contiguous());
      const Operand Gf = folds(G.op, batch, M) ? G : operand(G.keep.contiguous());
      gemm_into(*db, math, 1, K, N, batch * M, transposed(Af.op), Gf.op, 0.0);
    }
  }
}

// y = x W^T + b
Tensor linear(const OpContext& ctx, const Tensor& x, const Tensor& w, const Tensor& bias) {
  const DType dt = x.dtype();
  check_cuda_float(dt, "linear");
  KIMI_CHECK(w.device() == Device::kCUDA && (!bias.defined() || bias.device() == Device::kCUDA),
             "linear: a CUDA input with weight {} and bias {}", w.str(),
             bias.defined() ? bias.str() : "none");
  const int64_t in = w.size(1), out_f = w.size(0);
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) rows *= x.size(d);
  const Operand X = operand(x.detach().reshape({rows, in}));
  const Operand Wt = operand(w.detach());
  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  Tensor y = Tensor::empty(out_shape, dt, Device::kCUDA);
  double beta = 0;
  if (bias.defined()) {
    KIMI_CHECK(bias.numel() == out_f && bias.dtype() == dt, "linear: bias {} for {} outputs of {}",
               bias.str(), out_f, dtype_name(dt));
    // y starts as the bias rows and the GEMM adds into it (beta = 1): one rounding in bf16.
    Tensor bc = bias.detach().contiguous();
    cuda::broadcast_rows(elem_type(dt), rows, out_f, bc.raw_data(), y.raw_data());
    beta = 1;
  }
  gemm_into(y, gemm_math(ctx), 1, rows, out_f, in, X.op, transposed(Wt.op), beta);
  return y;
}

// dx = dy W, dW = dy^T x, dbias = column sums of dy
void linear_backward(const OpContext& ctx, const Tensor& x, const Tensor& w, const Tensor& g,
                     bool need_x, bool need_w, bool need_bias, Tensor* dx, Tensor* dw,
                     Tensor* dbias) {
  const DType dt = x.dtype();
  const int64_t in = w.size(1), out_f = w.size(0);
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) rows *= x.size(d);
  const cuda::GemmMath math = gemm_math(ctx);
  const Operand G = operand(grad_as(g, dt).reshape({rows, out_f}));
  if (need_x) {
    const Operand Wt = operand(w.detach());
    *dx = Tensor::empty(x.shape(), dt, Device::kCUDA);
    gemm_into(*dx, math, 1, rows, in, out_f, G.op, Wt.op, 0.0);
  }
  if (need_w) {
    const Operand X = operand(x.detach().reshape({rows, in}));
    *dw = Tensor::empty(w.shape(), dt, Device::kCUDA);
    gemm_into(*dw, math, 1, out_f, in, rows, transposed(G.op), X.op, 0.0);
  }
  if (need_bias) {
    const Tensor gc = G.keep.contiguous();
    *dbias = Tensor::empty({out_f}, dt, Device::kCUDA);
    cuda::column_sum(elem_type(dt), rows, out_f, gc.raw_data(), dbias->raw_data());
  }
}

}  // namespace

void register_cuda_product_kernels() {
  KernelTable<ProductKernels>::set(Device::kCUDA,
                                   {matmul, matmul_backward, linear, linear_backward});
}

}  // namespace kimi
