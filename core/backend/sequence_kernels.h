// Kernel table of the sequence ops: the depthwise causal conv1d and the embedding lookup, with
// a row scatter-add that is the embedding's backward (and serves any gather's backward, e.g.
// the MoE's). Inputs are checked by the ops (core/ops/sequence_ops.cpp), detached where the
// comment says so, and live on the table's device.
#pragma once

#include "core/backend/backend.h"

namespace kimi {

struct SequenceKernels {
  // y [B, T, D] = bias[d] + sum_{j<W} w[d, j] xpad[b, t+j, d], xpad = concat(prefix | zeros,
  // x) along T. x [B, T, D], w [D, W], bias [D] and prefix [B, W-1, D] (both optional):
  // detached and contiguous.
  Tensor (*causal_conv1d)(const Tensor& x, const Tensor& w, const Tensor& bias,
                          const Tensor& prefix) = nullptr;
  // From dy [B, T, D] and the forward's x, w, prefix: *dx, *dw, and *dbias and *dprefix where
  // those pointers are not null (dprefix only with a prefix).
  void (*causal_conv1d_backward)(const Tensor& x, const Tensor& w, const Tensor& prefix,
                                 const Tensor& dy, Tensor* dx, Tensor* dw, Tensor* dbias,
                                 Tensor* dprefix) = nullptr;
  // out [..., D] = weight [V, D] rows at ids (I32 or I64, any shape, on any device); an id
  // outside [0, V) throws. *ids_saved: the ids as embedding_backward reads them (checked,
  // contiguous, on the table's device).
  Tensor (*embedding)(const Tensor& weight, const Tensor& ids, Tensor* ids_saved) = nullptr;
  // The row scatter-add: out [num_rows, D] in dy's dtype, out[v] = sum over i with ids[i] == v
  // of dy[i] (dy [..., D] with ids.numel() rows). ids I32 or I64, on the table's device, all in
  // [0, num_rows) (not checked here).
  Tensor (*embedding_backward)(const Tensor& ids, const Tensor& dy, int64_t num_rows) = nullptr;
};

}  // namespace kimi
