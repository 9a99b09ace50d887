// The mixture-of-experts ops (models/moe.cpp composes them): a grouped GEMM over
// rows sorted by expert, a row gather, and the two index steps of routing. Group offsets and
// indices are device tensors, so a routed forward on the GPU never waits for the host.
#pragma once

#include "core/tensor/tensor.h"

namespace kimi {

// x [S, in] with its rows grouped by expert (rows offsets[e] .. offsets[e+1]-1 belong to expert
// e; offsets I64 [E+1], offsets[0] = 0, offsets[E] = S, non-decreasing), w [E, out, in] ->
// [S, out], row s of group e = x[s] @ w[e]^T. Differentiable in x and w. The offsets are checked
// on the CPU; on the GPU they are trusted (reading them back would stall the stream).
Tensor grouped_matmul(const Tensor& x, const Tensor& w, const Tensor& offsets);

// x [R, D] rows at index [S] (I32 or I64) -> [S, D]; the gradient adds back into the rows.
// Indices are checked on the CPU (one line naming the bad one) and trusted on the GPU.
Tensor gather_rows(const Tensor& x, const Tensor& index);

// Not differentiable. scores [N, E] (F32 or F64), bias [E] -> ids I32 [N, top_k]: the top_k
// experts by scores + bias, best first, ties to the lower id; groups > 1 first keeps the
// topk_group groups with the largest sums of their two best biased scores (DeepSeek-V3 noaux_tc
// routing). flat I32 [N * top_k] = n * E + ids[n, k]: where the chosen scores sit in scores.
struct ExpertChoice {
  Tensor ids, flat;
};
ExpertChoice moe_route_topk(const Tensor& scores, const Tensor& bias, int64_t top_k,
                            int64_t groups = 1, int64_t topk_group = 1);

// The chosen slots (n, k) of ids I32 [N, K] sorted stably by expert (0 <= id < num_experts).
struct ExpertSort {
  Tensor token;     // I32 [N*K]: the token of each sorted slot
  Tensor position;  // I32 [N*K]: the sorted position of slot n*K + k
  Tensor offsets;   // I64 [E+1]: where each expert's rows start; offsets[E] = N*K
};
ExpertSort moe_sort_by_expert(const Tensor& ids, int64_t num_experts);

}  // namespace kimi
