// Matrix products: matmul (batched) and linear (PyTorch layout, w [out, in]).
#include "core/cpu/gemm.h"
#include "core/ops/ops.h"
#include "core/cuda/gemm/matmul_cuda.h"

namespace kimi {

// C[b] = op(A[b]) op(B[b]) for `batch` contiguous matrices (stride 0 = shared operand).
static void batched_gemm(DType dt, bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K,
                         const Tensor& A, int64_t sa, const Tensor& B, int64_t sb, const Tensor& C,
                         bool accumulate) {
  dispatch_float(dt, "matmul", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* a = A.data<scalar_t>();
    const scalar_t* b = B.data<scalar_t>();
    scalar_t* c = C.data<scalar_t>();
    for (int64_t i = 0; i < batch; ++i)
      cpu::gemm<scalar_t>(ta, tb, M, N, K, scalar_t(1), a + i * sa, ta ? M : K, b + i * sb, tb ? K : N,
                          accumulate ? scalar_t(1) : scalar_t(0), c + i * M * N, N);
  });
}

// dA = dC B^T, dB = A^T dC (summed over the batch when B is a shared 2-d matrix)
Tensor matmul(const Tensor& a, const Tensor& b) {
  check_same_device(a, b, "matmul");
  KIMI_CHECK(a.dtype() == b.dtype(), "matmul: dtypes {} and {}", dtype_name(a.dtype()), dtype_name(b.dtype()));
  KIMI_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: {} @ {}", shape_str(a.shape()), shape_str(b.shape()));
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  KIMI_CHECK(b.size(-2) == K, "matmul: inner dims differ, {} @ {}", shape_str(a.shape()), shape_str(b.shape()));
  const bool shared_b = b.dim() == 2;
  const int64_t batch = a.numel() / std::max<int64_t>(M * K, 1);
  if (!shared_b) {
    KIMI_CHECK(Shape(a.shape().begin(), a.shape().end() - 2) == Shape(b.shape().begin(), b.shape().end() - 2),
               "matmul: batch dims differ, {} @ {}", shape_str(a.shape()), shape_str(b.shape()));
  }
#ifdef KIMI_LAB_CUDA
  if (a.device() == Device::kCUDA) return cuda_matmul(a, b);
#endif
  check_cpu(a, "matmul");
  Tensor ac = a.detach().contiguous(), bc = b.detach().contiguous();
  Shape out_shape(a.shape().begin(), a.shape().end() - 1);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, a.dtype());
  if (shared_b)  // one big GEMM: [batch*M, K] @ [K, N]
    batched_gemm(a.dtype(), false, false, 1, batch * M, N, K, ac, 0, bc, 0, out, false);
  else
    batched_gemm(a.dtype(), false, false, batch, M, N, K, ac, M * K, bc, K * N, out, false);
  return record("matmul", out, {a, b}, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gc = g[0].contiguous();
    Tensor da, db;
    if (a.requires_grad()) {
      da = Tensor::empty(a.shape(), a.dtype());
      if (shared_b)
        batched_gemm(a.dtype(), false, true, 1, batch * M, K, N, gc, 0, bc, 0, da, false);
      else
        batched_gemm(a.dtype(), false, true, batch, M, K, N, gc, M * N, bc, K * N, da, false);
    }
    if (b.requires_grad()) {
      db = Tensor::empty(b.shape(), b.dtype());
      if (shared_b)
        batched_gemm(a.dtype(), true, false, 1, K, N, batch * M, ac, 0, gc, 0, db, false);
      else
        batched_gemm(a.dtype(), true, false, batch, K, N, M, ac, M * K, gc, M * N, db, false);
    }
    return {da, db};
  });
}

// y = x W^T + b;  dx = dy W, dW = dy^T x, db = sum_rows dy
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  KIMI_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input {} with weight {}",
             shape_str(x.shape()), shape_str(w.shape()));
  KIMI_CHECK(x.dtype() == w.dtype(), "linear: input {} with weight {}", dtype_name(x.dtype()),
             dtype_name(w.dtype()));
#ifdef KIMI_LAB_CUDA
  if (x.device() == Device::kCUDA) return cuda_linear(x, w, bias);
#endif
  check_cpu(x, "linear");
  const int64_t in = w.size(1), out_f = w.size(0), rows = x.numel() / std::max<int64_t>(in, 1);
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous();
  Shape out_shape = x.shape();
  out_shape.back() = out_f;
  Tensor y = Tensor::empty(out_shape, x.dtype());
  dispatch_float(x.dtype(), "linear", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    scalar_t* yp = y.data<scalar_t>();
    if (bias.defined()) {
      KIMI_CHECK(bias.numel() == out_f, "linear: bias {} for {} outputs", shape_str(bias.shape()), out_f);
      Tensor bc = bias.detach().contiguous();
      const scalar_t* bp = bc.data<scalar_t>();
      for (int64_t r = 0; r < rows; ++r) std::copy(bp, bp + out_f, yp + r * out_f);
    }
    cpu::gemm<scalar_t>(false, true, rows, out_f, in, scalar_t(1), xc.data<scalar_t>(), in, wc.data<scalar_t>(),
                        in, bias.defined() ? scalar_t(1) : scalar_t(0), yp, out_f);
  });
  std::vector<Tensor> inputs = {x, w};
  if (bias.defined()) inputs.push_back(bias);
  return record("linear", y, inputs, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gc = g[0].contiguous();
    Tensor dx, dw, db;
    dispatch_float(gc.dtype(), "linear", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
      const scalar_t* gp = gc.data<scalar_t>();
      if (x.requires_grad()) {
        dx = Tensor::empty(x.shape(), x.dtype());
        cpu::gemm<scalar_t>(false, false, rows, in, out_f, scalar_t(1), gp, out_f, wc.data<scalar_t>(), in,
                            scalar_t(0), dx.data<scalar_t>(), in);
      }
      if (w.requires_grad()) {
        dw = Tensor::empty(w.shape(), w.dtype());
        cpu::gemm<scalar_t>(true, false, out_f, in, rows, scalar_t(1), gp, out_f, xc.data<scalar_t>(), in,
                            scalar_t(0), dw.data<scalar_t>(), in);
      }
    });
    std::vector<Tensor> grads = {dx, dw};
    if (bias.defined()) grads.push_back(bias.requires_grad() ? sum(gc.reshape({rows, out_f}), {0}).reshape(bias.shape()) : Tensor());
    return grads;
  });
}

}  // namespace kimi
