// Kernel table of the mixture-of-experts ops: the grouped GEMM over tokens sorted by expert, the
// row gather that sorts them (and un-sorts the results), and the two index kernels of routing
// (top-k on biased scores; a stable sort of the chosen (token, expert) slots by expert). Inputs
// are checked by the ops (core/ops/moe_ops.cpp) and live on the table's device. Group offsets and
// indices stay on the device, so routing never reads back to the host inside a forward.
#pragma once

#include "core/backend/backend.h"

namespace kimi {

struct MoeKernels {
  // y [S, out]: row s of group e (offsets[e] <= s < offsets[e+1], offsets I64 [E+1]) is
  // x[s] @ w[e]^T (x [S, in], w [E, out, in]). Rows outside [offsets[0], offsets[E]) are zero.
  Tensor (*grouped_matmul)(const OpContext& ctx, const Tensor& x, const Tensor& w,
                           const Tensor& offsets) = nullptr;
  // From dy = g: *dx row s = g[s] @ w[e] (need_x); *dw [e] = sum over group e of g[s]^T x[s]
  // (need_w; zero for an empty group).
  void (*grouped_matmul_backward)(const OpContext& ctx, const Tensor& x, const Tensor& w,
                                  const Tensor& offsets, const Tensor& g, bool need_x, bool need_w,
                                  Tensor* dx, Tensor* dw) = nullptr;
  // out [S, D] = x [R, D] rows at index [S] (I32 or I64, in range: checked by the op on the CPU).
  Tensor (*gather_rows)(const Tensor& x, const Tensor& index) = nullptr;
  // dx [rows, D]: row r = the sum of g [S, D] over the s with index[s] = r.
  Tensor (*gather_rows_backward)(const Tensor& index, const Tensor& g, int64_t rows) = nullptr;
  // Routing (DeepSeek-V3 noaux_tc): scores [N, E] (F32 or F64), bias [E] of the same dtype ->
  // I32 [N, top_k], the experts with the largest scores + bias, best first, ties to the lower id.
  // groups > 1: only experts of the topk_group groups with the largest sum of their two best
  // biased scores are eligible. *flat I32 [N * top_k]: n * E + the chosen id (the chosen scores'
  // positions in scores, for a differentiable gather of the routing weights).
  Tensor (*route_topk)(const Tensor& scores, const Tensor& bias, int64_t top_k, int64_t groups,
                       int64_t topk_group, Tensor* flat) = nullptr;
  // ids I32 [N, K] in [0, E) -> the N*K slots (n, k) sorted stably by expert: *token I32 [N*K]
  // the token of each sorted slot, *position I32 [N*K] the sorted position of slot n*K + k,
  // *offsets I64 [E+1] where each expert's run starts (offsets[E] = N*K).
  void (*sort_by_expert)(const Tensor& ids, int64_t num_experts, Tensor* token, Tensor* position,
                         Tensor* offsets) = nullptr;
};

}  // namespace kimi
