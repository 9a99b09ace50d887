// CPU kernels of the matrix products (core/backend/product_kernels.h) over the Eigen GEMM of
// gemm.h, in the tensors' dtype (ctx.precision is a GPU setting: ignored here).
#include <algorithm>

#include "core/backend/product_kernels.h"
#include "core/cpu/gemm.h"

namespace kimi {
namespace {

// C[b] = op(A[b]) op(B[b]) for `batch` contiguous matrices (stride 0 = shared operand).
void batched_gemm(DType dt, bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K,
                  const Tensor& A, int64_t sa, const Tensor& B, int64_t sb, const Tensor& C) {
  dispatch_float(dt, "matmul", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* a = A.data<scalar_t>();
    const scalar_t* b = B.data<scalar_t>();
    scalar_t* c = C.data<scalar_t>();
    for (int64_t i = 0; i < batch; ++i)
      cpu::gemm<scalar_t>(ta, tb, M, N, K, scalar_t(1), a + i * sa, ta ? M : K, b + i * sb,
                          tb ? K : N, scalar_t(0), c + i * M * N, N);
  });
}

// The sizes of a [..., M, K] @ b [K, N] or b [..., K, N].
struct MatmulDims {
  int64_t M, K, N, batch;
  bool shared_b;  // b is one 2-d matrix: the batch folds into M, one big GEMM
};
MatmulDims matmul_dims(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  return {M, K, N, a.numel() / std::max<int64_t>(M * K, 1), b.dim() == 2};
}

Tensor matmul(const OpContext&, const Tensor& a, const Tensor& b) {
  const MatmulDims d = matmul_dims(a, b);
  Tensor ac = a.detach().contiguous(), bc = b.detach().contiguous();
  Shape out_shape(a.shape().begin(), a.shape().end() - 1);
  out_shape.push_back(d.N);
  Tensor out = Tensor::empty(out_shape, a.dtype());
  if (d.shared_b)  // [batch*M, K] @ [K, N]
    batched_gemm(a.dtype(), false, false, 1, d.batch * d.M, d.N, d.K, ac, 0, bc, 0, out);
  else
    batched_gemm(a.dtype(), false, false, d.batch, d.M, d.N, d.K, ac, d.M * d.K, bc, d.K * d.N,
                 out);
  return out;
}

void matmul_backward(const OpContext&, const Tensor& a, const Tensor& b, const Tensor& g,
                     bool need_a, bool need_b, Tensor* da, Tensor* db) {
  const auto [M, K, N, batch, shared_b] = matmul_dims(a, b);
  Tensor ac = a.detach().contiguous(), bc = b.detach().contiguous();
  Tensor gc = g.detach().contiguous();
  if (need_a) {  // dA = dC B^T
    *da = Tensor::empty(a.shape(), a.dtype());
    if (shared_b)
      batched_gemm(a.dtype(), false, true, 1, batch * M, K, N, gc, 0, bc, 0, *da);
    else
      batched_gemm(a.dtype(), false, true, batch, M, K, N, gc, M * N, bc, K * N, *da);
  }
  if (need_b) {  // dB = A^T dC, a shared B summed over the batch as one [K, batch*M] product
    *db = Tensor::empty(b.shape(), b.dtype());
    if (shared_b)
      batched_gemm(a.dtype(), true, false, 1, K, N, batch * M, ac, 0, gc, 0, *db);
    else
      batched_gemm(a.dtype(), true, false, batch, K, N, M, ac, M * K, gc, M * N, *db);
  }
}

Tensor linear(const OpContext&, const Tensor& x, const Tensor& w, const Tensor& bias) {
  const int64_t in = w.size(1), out_f = w.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous();
  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  Tensor y = Tensor::empty(out_shape, x.dtype());
  dispatch_float(x.dtype(), "linear", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    scalar_t* yp = y.data<scalar_t>();
    if (bias.defined()) {  // y starts as the bias rows and the GEMM adds into it
      KIMI_CHECK(bias.numel() == out_f, "linear: bias {} for {} outputs", shape_str(bias.shape()),
                 out_f);
      Tensor bc = bias.detach().contiguous();
      const scalar_t* bp = bc.data<scalar_t>();
      for (int64_t r = 0; r < rows; ++r) std::copy(bp, bp + out_f, yp + r * out_f);
    }
    cpu::gemm<scalar_t>(false, true, rows, out_f, in, scalar_t(1), xc.data<scalar_t>(), in,
                        wc.data<scalar_t>(), in, bias.defined() ? scalar_t(1) : scalar_t(0), yp,
                        out_f);
  });
  return y;
}

void linear_backward(const OpContext&, const Tensor& x, const Tensor& w, const Tensor& g,
                     bool need_x, bool need_w, bool need_bias, Tensor* dx, Tensor* dw,
                     Tensor* dbias) {
  const int64_t in = w.size(1), out_f = w.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous();
  Tensor gc = g.detach().contiguous();
  dispatch_float(gc.dtype(), "linear", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* gp = gc.data<scalar_t>();
    if (need_x) {  // dx = dy W
      *dx = Tensor::empty(x.shape(), x.dtype());
      cpu::gemm<scalar_t>(false, false, rows, in, out_f, scalar_t(1), gp, out_f,
                          wc.data<scalar_t>(), in, scalar_t(0), dx->data<scalar_t>(), in);
    }
    if (need_w) {  // dW = dy^T x
      *dw = Tensor::empty(w.shape(), w.dtype());
      cpu::gemm<scalar_t>(true, false, out_f, in, rows, scalar_t(1), gp, out_f, xc.data<scalar_t>(),
                          in, scalar_t(0), dw->data<scalar_t>(), in);
    }
    if (need_bias) {  // dbias = column sums of dy, accumulated in double row by row (as sum())
      *dbias = Tensor::empty({out_f}, gc.dtype());
      scalar_t* db = dbias->data<scalar_t>();
#pragma omp parallel for if (rows * out_f > 65536) schedule(static)
      for (int64_t c = 0; c < out_f; ++c) {
        double acc = 0;
        for (int64_t r = 0; r < rows; ++r) acc += gp[r * out_f + c];
        db[c] = static_cast<scalar_t>(acc);
      }
    }
  });
}

}  // namespace

void register_cpu_product_kernels() {
  KernelTable<ProductKernels>::set(Device::kCPU,
                                   {matmul, matmul_backward, linear, linear_backward});
}

}  // namespace kimi
