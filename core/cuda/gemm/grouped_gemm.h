// Raw CUDA kernels of the mixture-of-experts ops (core/backend/moe_kernels.h): the grouped GEMM
// over rows sorted by expert, its weight gradient, top-k routing and the stable sort of the
// chosen slots by expert. Group offsets stay on the device: every launch size is a host-known
// bound (rows / 16 + experts tiles), so nothing here reads back to the host. Element types F32,
// BF16 (computed in fp32) and F64; all buffers contiguous row-major, launches on stream().
#pragma once

#include <cstdint>

#include "core/cuda/runtime/copy.h"

namespace kimi::cuda {

// Rows per tile of the grouped GEMM: a group of n rows takes ceil(n / kGroupTile) row tiles.
inline constexpr int64_t kGroupTile = 16;

// Row s of group e (offsets[e] <= s < offsets[e+1], offsets [E+1]) of y [S, N] gets x[s] @ B_e,
// x [S, K]: B_e = w[e]^T for w [E, N, K] (w_out_in) or w[e] for w [E, K, N]. Rows outside
// every group are not written. tiles: a device workspace of E + 1 int64.
void grouped_gemm(ElemType t, int64_t S, int64_t N, int64_t K, int64_t E, const void* x,
                  const void* w, bool w_out_in, const int64_t* offsets, int64_t* tiles, void* y);
// dw [E, O, I]: dw[e] = sum over the rows s of group e of g[s]^T x[s] (g [S, O], x [S, I]);
// zero for an empty group.
void grouped_gemm_wgrad(ElemType t, int64_t S, int64_t O, int64_t I, int64_t E, const void* g,
                        const void* x, const int64_t* offsets, void* dw);

// Limits of the routing kernel (one thread per token keeps its choice in registers).
inline constexpr int64_t kMaxRouteTopK = 32, kMaxRouteGroups = 64;
// ids [N, K], flat [N, K] (= n * E + id): the K experts with the largest scores + bias (t is F32
// or F64), best first, ties to the lower id; groups > 1 keeps the experts of the topk_group
// groups with the largest sums of their two best biased scores.
void moe_route_topk(ElemType t, int64_t N, int64_t E, int64_t K, int64_t groups, int64_t topk_group,
                    const void* scores, const void* bias, int32_t* ids, int32_t* flat);
// The S = N*K slots of ids [N, K] sorted stably by expert: token [S] (of each sorted slot),
// position [S] (sorted position of slot s), offsets [E+1]. counts: a workspace of E int64.
void moe_sort_by_expert(int64_t N, int64_t K, int64_t E, const int32_t* ids, int32_t* token,
                        int32_t* position, int64_t* offsets, int64_t* counts);

}  // namespace kimi::cuda
