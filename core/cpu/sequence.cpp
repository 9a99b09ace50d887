// CPU kernels of the sequence ops (core/backend/sequence_kernels.h): the depthwise causal
// conv1d over an explicitly padded input, the embedding gather and its row scatter-add. All
// buffers contiguous; reductions over many rows are parallel over blocks of columns, so no two
// tasks write the same output.
#include <algorithm>
#include <vector>

#include "core/backend/sequence_kernels.h"

namespace kimi {
namespace {

constexpr int64_t kColBlock = 64;  // columns per task in the column-parallel reductions

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
// Tasks are (group of rows, block of columns): a model's few channels (D = 64 is one block)
// would leave every other thread idle. Each group's double partial sums are added in group
// order, and the groups depend only on B T (at most kMaxGroups), so the result does not depend
// on the thread count.
constexpr int64_t kMaxGroups = 64, kMinGroupRows = 256;

template <class T>
void conv_bwd_weight(int64_t B, int64_t Tn, int64_t D, int64_t W, const T* dy, const T* xpad, T* dw,
                     T* dbias) {
  const int64_t L = Tn + W - 1, blocks = (D + kColBlock - 1) / kColBlock, rows = B * Tn;
  const int64_t per = std::max(kMinGroupRows, (rows + kMaxGroups - 1) / kMaxGroups);
  const int64_t groups = (rows + per - 1) / per;
  // part[(g * blocks + blk)][(W + 1) * kColBlock]: dw's W rows of the block's columns, then dbias.
  const int64_t stride = (W + 1) * kColBlock;
  std::vector<double> part(groups * blocks * stride, 0.0);
#pragma omp parallel for collapse(2) if (rows * D * W > 65536) schedule(static)
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t d0 = blk * kColBlock, nd = std::min(D, d0 + kColBlock) - d0;
      double* aw = part.data() + (g * blocks + blk) * stride;
      double* ab = aw + W * kColBlock;
      for (int64_t r = g * per; r < std::min(rows, (g + 1) * per); ++r) {
        const int64_t b = r / Tn, t = r % Tn;
        const T* gr = dy + r * D + d0;
        for (int64_t k = 0; k < nd; ++k) ab[k] += gr[k];
        for (int64_t j = 0; j < W; ++j) {
          const T* xr = xpad + (b * L + t + j) * D + d0;
          for (int64_t k = 0; k < nd; ++k)
            aw[j * kColBlock + k] += static_cast<double>(gr[k]) * xr[k];
        }
      }
    }
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t d0 = blk * kColBlock, nd = std::min(D, d0 + kColBlock) - d0;
    for (int64_t k = 0; k < nd; ++k) {
      double sb = 0;
      for (int64_t g = 0; g < groups; ++g)
        sb += part[(g * blocks + blk) * stride + W * kColBlock + k];
      if (dbias) dbias[d0 + k] = static_cast<T>(sb);
      for (int64_t j = 0; j < W; ++j) {
        double sw = 0;
        for (int64_t g = 0; g < groups; ++g)
          sw += part[(g * blocks + blk) * stride + j * kColBlock + k];
        dw[(d0 + k) * W + j] = static_cast<T>(sw);
      }
    }
  }
}

// x [B, T, D] with prefix | zeros in front along T: what both passes of the conv read.
Tensor padded(const Tensor& x, const Tensor& prefix, int64_t W) {
  const int64_t B = x.size(0), Tn = x.size(1), D = x.size(2);
  Tensor xpad = Tensor::empty({B, Tn + W - 1, D}, x.dtype());
  dispatch_float(x.dtype(), "causal_conv1d", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    conv_pad<scalar_t>(B, Tn, D, W, x.data<scalar_t>(),
                       prefix.defined() ? prefix.data<scalar_t>() : nullptr, xpad.data<scalar_t>());
  });
  return xpad;
}

Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& prefix) {
  const int64_t B = x.size(0), Tn = x.size(1), D = x.size(2), W = w.size(1);
  Tensor xpad = padded(x, prefix, W);
  Tensor y = Tensor::empty({B, Tn, D}, x.dtype());
  dispatch_float(x.dtype(), "causal_conv1d", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    conv_fwd<scalar_t>(B, Tn, D, W, xpad.data<scalar_t>(), w.data<scalar_t>(),
                       bias.defined() ? bias.data<scalar_t>() : nullptr, y.data<scalar_t>());
  });
  return y;
}

// The padded input is built again rather than kept from the forward (one copy of x).
void causal_conv1d_backward(const Tensor& x, const Tensor& w, const Tensor& prefix,
                            const Tensor& dy, Tensor* dx, Tensor* dw, Tensor* dbias,
                            Tensor* dprefix) {
  const int64_t Tn = x.size(1), D = x.size(2), W = w.size(1);
  Tensor xpad = padded(x, prefix, W);
  Tensor gc = dy.detach().contiguous();
  Tensor dxpad = Tensor::empty(xpad.shape(), xpad.dtype());
  *dw = Tensor::empty({D, W}, xpad.dtype());
  if (dbias) *dbias = Tensor::empty({D}, xpad.dtype());
  dispatch_float(xpad.dtype(), "causal_conv1d", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    conv_bwd_input<scalar_t>(x.size(0), Tn, D, W, gc.data<scalar_t>(), w.data<scalar_t>(),
                             dxpad.data<scalar_t>());
    conv_bwd_weight<scalar_t>(x.size(0), Tn, D, W, gc.data<scalar_t>(), xpad.data<scalar_t>(),
                              dw->data<scalar_t>(), dbias ? dbias->data<scalar_t>() : nullptr);
  });
  *dx = dxpad.narrow(1, W - 1, Tn).contiguous();
  if (dprefix) *dprefix = dxpad.narrow(1, 0, W - 1).contiguous();
}

Tensor embedding(const Tensor& weight, const Tensor& ids, Tensor* ids_saved) {
  const int64_t V = weight.size(0), D = weight.size(1), n = ids.numel();
  std::vector<int64_t> idx = ids.to_vector<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    KIMI_CHECK(idx[i] >= 0 && idx[i] < V, "embedding: id {} at position {} out of range [0, {})",
               idx[i], i, V);
  Tensor wc = weight.detach().contiguous();
  Shape out_shape = ids.shape();
  out_shape.push_back(D);
  Tensor y = Tensor::empty(out_shape, weight.dtype());
  dispatch_float(weight.dtype(), "embedding", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* wp = wc.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
#pragma omp parallel for if (n * D > 65536) schedule(static)
    for (int64_t i = 0; i < n; ++i) std::copy(wp + idx[i] * D, wp + (idx[i] + 1) * D, yp + i * D);
  });
  *ids_saved = Tensor::from_vector(idx, {n});
  return y;
}

Tensor embedding_backward(const Tensor& ids, const Tensor& dy, int64_t num_rows) {
  const int64_t n = ids.numel(), D = dy.size(-1);
  KIMI_CHECK(dy.numel() == n * D, "embedding backward: {} ids for gradient {}", n, dy.str());
  const std::vector<int64_t> idx = ids.to_vector<int64_t>();
  Tensor gc = dy.detach().contiguous();
  Tensor dw = Tensor::zeros({num_rows, D}, dy.dtype());
  dispatch_float(dy.dtype(), "embedding", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* gp = gc.data<scalar_t>();
    scalar_t* dp = dw.data<scalar_t>();
    const int64_t blocks = (D + kColBlock - 1) / kColBlock;
    // Blocks of columns in parallel: repeated ids then never race on a row.
#pragma omp parallel for if (n * D > 65536) schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t d0 = blk * kColBlock, d1 = std::min(D, d0 + kColBlock);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t d = d0; d < d1; ++d) dp[idx[i] * D + d] += gp[i * D + d];
    }
  });
  return dw;
}

}  // namespace

void register_cpu_sequence_kernels() {
  KernelTable<SequenceKernels>::set(
      Device::kCPU, {causal_conv1d, causal_conv1d_backward, embedding, embedding_backward});
}

}  // namespace kimi
