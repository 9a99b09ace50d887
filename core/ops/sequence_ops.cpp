// Sequence ops: the depthwise causal short convolution of linear-attention layers and the
// token embedding lookup. causal_conv1d matches PyTorch's
// nn.Conv1d(D, D, W, groups=D, padding=W-1)(x.transpose(1, 2))[..., :T] (what FLA and HF use,
// weight [D, 1, W] there, [D, W] here; cross-correlation, w[:, W-1] multiplies the current step).
#include <vector>

#include "core/backend/sequence_kernels.h"
#include "core/ops/ops.h"

namespace kimi {
namespace {

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
  const auto& k = kernels<SequenceKernels>(x, "causal_conv1d");
  auto detached = [](const Tensor& t) { return t.defined() ? t.detach().contiguous() : t; };
  const Tensor xc = detached(x), wc = detached(w), bc = detached(bias), pc = detached(prefix);
  Tensor y = k.causal_conv1d(xc, wc, bc, pc);
  const bool has_bias = bias.defined(), has_prefix = prefix.defined();
  std::vector<Tensor> inputs = {x, w};
  if (has_bias) inputs.push_back(bias);
  if (has_prefix) inputs.push_back(prefix);
  return record("causal_conv1d", y, inputs,
                [=, &k](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  Tensor dx, dw, db, dp;
                  k.causal_conv1d_backward(xc, wc, pc, g[0], &dx, &dw, has_bias ? &db : nullptr,
                                           has_prefix ? &dp : nullptr);
                  std::vector<Tensor> grads = {dx, dw};
                  if (has_bias) grads.push_back(db);
                  if (has_prefix) grads.push_back(dp);
                  return grads;
                });
}

// out[..., :] = weight[ids[...], :];  dweight[v, :] = sum_{i: ids[i] = v} dout[i, :]
Tensor embedding(const Tensor& weight, const Tensor& ids) {
  KIMI_CHECK(weight.dim() == 2, "embedding: weight must be [V, D], got {}", weight.str());
  KIMI_CHECK(ids.dtype() == DType::kI32 || ids.dtype() == DType::kI64,
             "embedding: ids must be I32 or I64, got {}", dtype_name(ids.dtype()));
  const auto& k = kernels<SequenceKernels>(weight, "embedding");
  Tensor ids_saved;  // checked, on weight's device
  Tensor y = k.embedding(weight, ids, &ids_saved);
  const DType dt = weight.dtype();
  const int64_t V = weight.size(0);
  return record("embedding", y, {weight},
                [&k, ids_saved, dt, V](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  return {k.embedding_backward(ids_saved, g[0].to(dt), V)};
                });
}

}  // namespace kimi
