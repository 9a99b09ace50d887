// Sequence ops: the depthwise causal short convolution of linear-attention layers and the
// token embedding lookup. causal_conv1d matches PyTorch's
// nn.Conv1d(D, D, W, groups=D, padding=W-1)(x.transpose(1, 2))[..., :T] (what FLA and HF use,
// weight [D, 1, W] there, [D, W] here; cross-correlation, w[:, W-1] multiplies the current step).
#include <algorithm>
#include <memory>
#include <vector>

#include "core/ops/ops.h"
#include "core/cuda/sequence/sequence_cuda.h"

namespace kimi {
namespace {

constexpr int64_t kColBlock = 64;  // columns per task in the column-parallel reductions

// --- raw-pointer CPU kernels, all buffers contiguous -------------------------------------

// xpad [B, T+W-1, D] = concat(prefix [B, W-1, D] or zeros, x [B, T, D]) along T
template <class T>
void conv_pad(int64_t B, int64_t Tn, int64_t D, int64_t W, const T* x, const T* prefix, T* xpad) {
  const int64_t L = Tn + W - 1;
  for (int64_t b = 0; b < B; ++b) {
    T* dst = xpad + b * L * D;
    if (prefix)
      std::copy(prefix + b * (W - 1) * D, prefix + (b + 1) * (W - 1) * D, dst);
    else
      std::fill(dst, dst + (W - 1) * D, T(0));
    std::copy(x + b * Tn * D, x + (b + 1) * Tn * D, dst + (W - 1) * D);
  }
}

// y[b,t,d] = bias[d] + sum_{j<W} w[d,j] * xpad[b, t+j, d]
template <class T>
void conv_fwd(int64_t B, int64_t Tn, int64_t D, int64_t W, const T* xpad, const T* w, const T* bias,
              T* y) {
  const int64_t L = Tn + W - 1;
#pragma omp parallel for if (B * Tn * D * W > 65536) schedule(static)
  for (int64_t bt = 0; bt < B * Tn; ++bt) {
    const int64_t b = bt / Tn, t = bt % Tn;
    T* yr = y + bt * D;
    for (int64_t d = 0; d < D; ++d) yr[d] = bias ? bias[d] : T(0);
    for (int64_t j = 0; j < W; ++j) {
      const T* xr = xpad + (b * L + t + j) * D;
      for (int64_t d = 0; d < D; ++d) yr[d] += w[d * W + j] * xr[d];
    }
  }
}

// dxpad[b,i,d] = sum_{j<W, 0<=i-j<T} w[d,j] * dy[b, i-j, d]
template <class T>
void conv_bwd_input(int64_t B, int64_t Tn, int64_t D, int64_t W, const T* dy, const T* w,
                    T* dxpad) {
  const int64_t L = Tn + W - 1;
#pragma omp parallel for if (B * L * D * W > 65536) schedule(static)
  for (int64_t bi = 0; bi < B * L; ++bi) {
    const int64_t b = bi / L, i = bi % L;
    T* dr = dxpad + bi * D;
    std::fill(dr, dr + D, T(0));
    for (int64_t j = 0; j < W; ++j) {
      const int64_t t = i - j;
      if (t < 0 || t >= Tn) continue;
      const T* gr = dy + (b * Tn + t) * D;
      for (int64_t d = 0; d < D; ++d) dr[d] += w[d * W + j] * gr[d];
    }
  }
}

// dw[d,j] = sum_{b,t} dy[b,t,d] * xpad[b,t+j,d];  dbias[d] = sum_{b,t} dy[b,t,d]
// Parallel over blocks of channels, so no two tasks write the same output.
template <class T>
void conv_bwd_weight(int64_t B, int64_t Tn, int64_t D, int64_t W, const T* dy, const T* xpad, T* dw,
                     T* dbias) {
  const int64_t L = Tn + W - 1, blocks = (D + kColBlock - 1) / kColBlock;
#pragma omp parallel for if (B * Tn * D * W > 65536) schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t d0 = blk * kColBlock, d1 = std::min(D, d0 + kColBlock), nd = d1 - d0;
    std::vector<double> aw(W * nd, 0.0), ab(nd, 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Tn; ++t) {
        const T* gr = dy + (b * Tn + t) * D + d0;
        for (int64_t k = 0; k < nd; ++k) ab[k] += gr[k];
        for (int64_t j = 0; j < W; ++j) {
          const T* xr = xpad + (b * L + t + j) * D + d0;
          for (int64_t k = 0; k < nd; ++k) aw[j * nd + k] += static_cast<double>(gr[k]) * xr[k];
        }
      }
    for (int64_t k = 0; k < nd; ++k) {
      if (dbias) dbias[d0 + k] = static_cast<T>(ab[k]);
      for (int64_t j = 0; j < W; ++j) dw[(d0 + k) * W + j] = static_cast<T>(aw[j * nd + k]);
    }
  }
}

void check_conv_args(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& prefix) {
  KIMI_CHECK(x.dim() == 3, "causal_conv1d: x must be [B, T, D], got {}", x.str());
  const int64_t B = x.size(0), D = x.size(2);
  KIMI_CHECK(w.dim() == 2 && w.size(0) == D && w.size(1) >= 1,
             "causal_conv1d: weight must be [D={}, W>=1], got {}", D, w.str());
  KIMI_CHECK(w.dtype() == x.dtype(), "causal_conv1d: weight {} for input {}", dtype_name(w.dtype()),
             dtype_name(x.dtype()));
  check_same_device(x, w, "causal_conv1d");
  if (bias.defined())
    KIMI_CHECK(bias.dim() == 1 && bias.size(0) == D && bias.dtype() == x.dtype(),
               "causal_conv1d: bias must be [D={}] {}, got {}", D, dtype_name(x.dtype()),
               bias.str());
  if (prefix.defined())
    KIMI_CHECK(prefix.shape() == Shape({B, w.size(1) - 1, D}) && prefix.dtype() == x.dtype(),
               "causal_conv1d: prefix must be [B={}, W-1={}, D={}] {}, got {}", B, w.size(1) - 1, D,
               dtype_name(x.dtype()), prefix.str());
}

}  // namespace

// y[b,t,d] = bias[d] + sum_{j<W} w[d,j] * xpad[b,t+j,d],  xpad = concat(prefix | 0, x) along T
// dxpad = the transposed conv of dy (conv_bwd_input), split into dprefix | dx;
// dw[d,j] = sum_{b,t} dy[b,t,d] xpad[b,t+j,d];  dbias = sum_{b,t} dy
Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& prefix) {
  check_conv_args(x, w, bias, prefix);
#ifdef KIMI_LAB_CUDA
  if (x.device() == Device::kCUDA) return cuda_causal_conv1d(x, w, bias, prefix);
#endif
  check_cpu(x, "causal_conv1d");
  const int64_t B = x.size(0), Tn = x.size(1), D = x.size(2), W = w.size(1);
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous(), bc, pc;
  if (bias.defined()) bc = bias.detach().contiguous();
  if (prefix.defined()) pc = prefix.detach().contiguous();
  Tensor xpad = Tensor::empty({B, Tn + W - 1, D}, x.dtype());
  Tensor y = Tensor::empty({B, Tn, D}, x.dtype());
  dispatch_float(x.dtype(), "causal_conv1d", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    conv_pad<scalar_t>(B, Tn, D, W, xc.data<scalar_t>(),
                       pc.defined() ? pc.data<scalar_t>() : nullptr, xpad.data<scalar_t>());
    conv_fwd<scalar_t>(B, Tn, D, W, xpad.data<scalar_t>(), wc.data<scalar_t>(),
                       bc.defined() ? bc.data<scalar_t>() : nullptr, y.data<scalar_t>());
  });
  const bool has_bias = bias.defined(), has_prefix = prefix.defined();
  std::vector<Tensor> inputs = {x, w};
  if (has_bias) inputs.push_back(bias);
  if (has_prefix) inputs.push_back(prefix);
  return record(
      "causal_conv1d", y, inputs, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        Tensor gc = g[0].contiguous();
        Tensor dxpad = Tensor::empty(xpad.shape(), xpad.dtype());
        Tensor dw = Tensor::empty({D, W}, xpad.dtype());
        Tensor db = has_bias ? Tensor::empty({D}, xpad.dtype()) : Tensor();
        dispatch_float(xpad.dtype(), "causal_conv1d", [&](auto tag_) {
          using scalar_t = KIMI_SCALAR_T(tag_);
          conv_bwd_input<scalar_t>(B, Tn, D, W, gc.data<scalar_t>(), wc.data<scalar_t>(),
                                   dxpad.data<scalar_t>());
          conv_bwd_weight<scalar_t>(B, Tn, D, W, gc.data<scalar_t>(), xpad.data<scalar_t>(),
                                    dw.data<scalar_t>(), has_bias ? db.data<scalar_t>() : nullptr);
        });
        std::vector<Tensor> grads = {dxpad.narrow(1, W - 1, Tn).contiguous(), dw};
        if (has_bias) grads.push_back(db);
        if (has_prefix) grads.push_back(dxpad.narrow(1, 0, W - 1).contiguous());
        return grads;
      });
}

// out[..., :] = weight[ids[...], :];  dweight[v, :] = sum_{i: ids[i] = v} dout[i, :]
Tensor embedding(const Tensor& weight, const Tensor& ids) {
  KIMI_CHECK(weight.dim() == 2, "embedding: weight must be [V, D], got {}", weight.str());
  KIMI_CHECK(ids.dtype() == DType::kI32 || ids.dtype() == DType::kI64,
             "embedding: ids must be I32 or I64, got {}", dtype_name(ids.dtype()));
#ifdef KIMI_LAB_CUDA
  if (weight.device() == Device::kCUDA) return cuda_embedding(weight, ids);
#endif
  check_cpu(weight, "embedding");
  const int64_t V = weight.size(0), D = weight.size(1), n = ids.numel();
  auto idx = std::make_shared<std::vector<int64_t>>(ids.to_vector<int64_t>());
  for (int64_t i = 0; i < n; ++i)
    KIMI_CHECK((*idx)[i] >= 0 && (*idx)[i] < V,
               "embedding: id {} at position {} out of range [0, {})", (*idx)[i], i, V);
  Tensor wc = weight.detach().contiguous();
  Shape out_shape = ids.shape();
  out_shape.push_back(D);
  Tensor y = Tensor::empty(out_shape, weight.dtype());
  dispatch_float(weight.dtype(), "embedding", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* wp = wc.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
#pragma omp parallel for if (n * D > 65536) schedule(static)
    for (int64_t i = 0; i < n; ++i)
      std::copy(wp + (*idx)[i] * D, wp + ((*idx)[i] + 1) * D, yp + i * D);
  });
  const DType dt = weight.dtype();
  return record("embedding", y, {weight}, [=](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor gc = g[0].contiguous();
    Tensor dw = Tensor::zeros({V, D}, dt);
    dispatch_float(dt, "embedding", [&](auto tag_) {
      using scalar_t = KIMI_SCALAR_T(tag_);
      const scalar_t* gp = gc.data<scalar_t>();
      scalar_t* dp = dw.data<scalar_t>();
      const int64_t blocks = (D + kColBlock - 1) / kColBlock;
      // Blocks of columns in parallel: repeated ids then never race on a row.
#pragma omp parallel for if (n * D > 65536) schedule(static)
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t d0 = blk * kColBlock, d1 = std::min(D, d0 + kColBlock);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t d = d0; d < d1; ++d) dp[(*idx)[i] * D + d] += gp[i * D + d];
      }
    });
    return {dw};
  });
}

}  // namespace kimi
