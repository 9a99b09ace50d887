// Launchers of the decode engine's kernels (inference/engine/cuda/*.cu). Raw pointers, sizes and
// a stream; no framework types (docs/architecture.md). Layouts, row-major throughout:
//   h       fp32 [B, d]      residual stream
//   x       bf16 [B, d]      a normed copy of h (the projections' input)
//   weights bf16 [out, in]   as nn::Linear (y = x W^T)
// `slots[b]` is the cache slot of batch row b; `lengths[slot]` its tokens before this step.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kimi::inference::engine::cuda {

using bf16 = __nv_bfloat16;

// --- weights and synthetic caches (init.cu) ---
// kind: InitKind of weight_layout.h. f32 picks the element type of `dst`.
void init_tensor(void* dst, bool f32, int64_t n, int kind, float a, float b, uint64_t seed,
                 uint64_t tensor_id, cudaStream_t s);
// uniform(-scale, scale) from a hash of (seed, index).
void fill_uniform(void* dst, bool f32, int64_t n, float scale, uint64_t seed, cudaStream_t s);
// fp32 host data staged on the device -> the entry's type.
void convert_f32(void* dst, bool f32, const float* src, int64_t n, cudaStream_t s);
void set_lengths(int* lengths, int n, int value, cudaStream_t s);

// --- small ops (norm_embed.cu) ---
void embed(const int* tokens, const bf16* table, int B, int d, float* h, cudaStream_t s);
// out = bf16(x * rsqrt(mean(x^2) + eps) * w), x rows of `stride` elements; out_f32 (optional)
// gets the same row unrounded (the MoE router's input: routing near a tie must not depend on
// the bf16 rounding of its input).
void rms_norm(const float* x, int64_t stride, const bf16* w, int B, int d, float eps, bf16* out,
              float* out_f32, cudaStream_t s);
// out[r, j] = silu(gu[r, j]) * gu[r, h + j]; gu rows of 2h.
void swiglu(const float* gu, int rows, int h, bf16* out, cudaStream_t s);
void advance_lengths(const int* slots, int B, int* lengths, cudaStream_t s);

// --- GEMV (gemv.cu): y[r, n] (+)= sum_k W[n, k] x[r, k], every weight row read once per 8
// rows of x. x is bf16 or fp32 (x_f32) with row stride x_stride; y row stride y_stride.
void gemv(const bf16* W, int N, int K, const void* x, bool x_f32, int64_t x_stride, int B, float* y,
          int64_t y_stride, bool accumulate, cudaStream_t s);
// The same product streamed at the copy rate (gemv_split.cu): 8-warp blocks, warps of a block
// splitting K and each taking rows_per_warp rows (1, 2 or 4; 0 = chosen from N and K), the
// grid the resident blocks. The default B <= 8 path; gemv is kept for KIMI_ENGINE_GEMV=old|v1.
void gemv_split(const bf16* W, int N, int K, const void* x, bool x_f32, int64_t x_stride, int B,
                float* y, int64_t y_stride, bool accumulate, cudaStream_t s, int rows_per_warp = 0);
// gemv_split of swiglu's output without it: x[r, k] = bf16(silu(gu[r, k]) * gu[r, K + k]), gu
// fp32 rows [gate K | up K] of stride gu_stride (the down projection of an MLP; no act buffer).
void gemv_swiglu(const bf16* W, int N, int K, const float* gu, int64_t gu_stride, int B, float* y,
                 int64_t y_stride, bool accumulate, cudaStream_t s, int rows_per_warp = 0);

// --- MoE (moe.cu) ---
// The per-step plan: which experts were chosen and, per chosen expert, its (token, k) slots.
struct MoePlan {
  int* n_active;  // [1]
  int* active;    // [E] expert ids, in id order
  int* offsets;   // [E + 1] into `sorted`, per active expert
  int* sorted;    // [B * top_k] slot indices b * top_k + k
};
// scores[b, e] = sigmoid(x[b] . router[e]) (x and router fp32, router [E, d]).
void moe_router(const float* x, const float* router, int B, int d, int E, float* scores,
                cudaStream_t s);
// Top-k by scores + bias (ties to the lower id); weights = unbiased scores renormalised (top_k
// > 1) times `scale`. ids, weights: [B, top_k].
void moe_topk(const float* scores, const float* bias, int B, int E, int top_k, bool renorm,
              float scale, int* ids, float* weights, cudaStream_t s);
void moe_plan(const int* ids, int slots_n, int E, const MoePlan& plan, cudaStream_t s);
// Grouped GEMV over the active experts: for each active expert e and each of its slots r,
// y[r, n] = sum_k W_e[n, k] x[r / in_div, k], W_e = W0 + e * expert_stride (elements).
// max_groups bounds the grid (min(E, slots)); each chosen expert's rows are read once per 8 slots.
void expert_gemv(const bf16* W0, int64_t expert_stride, int N, int K, const bf16* x,
                 int64_t x_stride, int in_div, const MoePlan& plan, int max_groups, float* y,
                 int64_t y_stride, cudaStream_t s);
// expert_gemv as gemv_split: one launch over (chosen expert, row tile) items. max_count (a
// bound on any expert's slots, e.g. the batch size) only picks the kernel's input tile.
void expert_gemv_split(const bf16* W0, int64_t expert_stride, int N, int K, const bf16* x,
                       int64_t x_stride, int in_div, const MoePlan& plan, int max_groups,
                       int max_count, float* y, int64_t y_stride, cudaStream_t s,
                       int rows_per_warp = 0);
// expert_gemv_split of swiglu's output (as gemv_swiglu): the routed experts' down projection
// straight from the gate_up output gu [slots, 2K] (in_div 1).
void expert_swiglu(const bf16* W0, int64_t expert_stride, int N, int K, const float* gu,
                   int64_t gu_stride, const MoePlan& plan, int max_groups, int max_count, float* y,
                   int64_t y_stride, cudaStream_t s, int rows_per_warp = 0);
// Router, top-k and plan in one launch (moe_route.cu), the results of moe_router + moe_topk +
// moe_plan: blocks score 8 experts each; the last block to finish (a ticket, zero before the
// call and left zero) picks every token's top_k and builds the plan. scores [B, E] workspace.
// For decode batches (B <= 8: the one block's top-k and plan stay short).
void moe_route_fused(const float* x, const float* router, const float* bias, int B, int d, int E,
                     int top_k, bool renorm, float scale, float* scores, int* ids, float* weights,
                     const MoePlan& plan, unsigned* ticket, cudaStream_t s);
// moe_combine, then rms_norm of the new h (norm_w, eps) into out: the MoE layer's residual add
// and the next layer's input norm in one kernel (a block per row).
void moe_combine_norm(const float* y, const float* weights, int B, int top_k, int d, float* h,
                      const bf16* norm_w, float eps, bf16* out, cudaStream_t s);
// expert_gemv on tensor cores (expert_mma.cu): each chosen expert's rows read once per 64 of
// its slots instead of once per 8. The same arguments and result (to the order of fp32 sums).
void expert_mma(const bf16* W0, int64_t expert_stride, int N, int K, const bf16* x,
                int64_t x_stride, int in_div, const MoePlan& plan, int max_groups, float* y,
                int64_t y_stride, cudaStream_t s);
// h[b, n] += sum_k weights[b, k] y[b * top_k + k, n].
void moe_combine(const float* y, const float* weights, int B, int top_k, int d, float* h,
                 cudaStream_t s);

// --- KDA (kda_decode.cu): one fused kernel per (row, head) after the projections ---
struct KdaStep {
  int B, H, K, W;  // value dim = K
  const int* slots;
  const float* proj;  // [B, proj_stride]: q (HK), k (HK), v (HK), f_a (K), g_a (K), b (H)
  int64_t proj_stride;
  const float* f;                        // [B, HK] f_b(f_a) (before dt_bias)
  const float* z;                        // [B, HK] g_b(g_a) (before its bias)
  const bf16 *conv_q, *conv_k, *conv_v;  // [HK, W]
  const float *a_log, *dt_bias;          // [H], [HK]
  const bf16 *g_bias, *o_norm;           // [HK], [K]
  float* state;                          // [slots, H, K, K]
  float* tails;                          // [slots, 3, W-1, HK]
  float norm_eps;
  bf16* out;  // [B, HK]
  // vsplit > 1: the value columns over vsplit blocks per (row, head) (kda_decode.cu's split
  // kernel), with o_part [B, HK], ss_part [B, H, vsplit] and tickets [B * H] (zero, left zero).
  int vsplit = 1;
  float* o_part = nullptr;
  float* ss_part = nullptr;
  unsigned* tickets = nullptr;
};
void kda_decode(const KdaStep& a, cudaStream_t s);

// --- MLA (mla_decode.cu): absorbed attention over the latent cache ---
struct MlaStep {
  int B, H, nope, rope, vd, rank;
  const int* slots;
  const int* lengths;
  const float* proj;  // [B, proj_stride]: q (H * (nope + rope)), kv_a (rank + rope)
  int64_t proj_stride;
  const bf16* kv_norm;  // [rank]
  const bf16* kv_b;     // [H * (nope + vd), rank]
  float norm_eps, scale;
  bf16* cache;  // [slots, max_tokens, rank + rope]
  int64_t max_tokens;
  float* qa;       // [B, H, rank + rope] workspace
  float* part_o;   // [B, splits, H, rank]
  float* part_ml;  // [B, splits, H, 2]
  float* o_lat;    // [B, H, rank]
  int splits;
  bf16* out;  // [B, H * vd]
};
void mla_decode(const MlaStep& a, cudaStream_t s);
// Shared memory the fp32 attention kernel needs; the layout refuses configs beyond the device's.
int64_t mla_smem_bytes(int H, int rank, int rope);
constexpr int kMlaMaxAccPerThread = 64;  // H * rank <= 64 * 256 (the fp32 kernel)
// The attention alone, a.qa -> a.o_lat through part_o / part_ml (attend + merge), with the
// kernel named: kAuto = the tensor-core one where mla_attend_tc_fits, else the fp32 one (kOld).
// mla_decode passes mla_kernel_from_env(): kOld when KIMI_ENGINE_MLA_KERNEL=old (read once).
enum class MlaKernel { kAuto, kOld, kTensorCore };
void mla_attend(const MlaStep& a, MlaKernel kernel, cudaStream_t s);
MlaKernel mla_kernel_from_env();
// The tensor-core kernel's shapes (mla_attend_tc.cu): H 16 or 32, rank a multiple of 128 up to
// 512, rope a multiple of 16, shared memory within the device's limit.
bool mla_attend_tc_fits(int H, int rank, int rope);
void mla_attend_tc(const MlaStep& a, cudaStream_t s);  // attend only (part_o / part_ml)

// --- GEMMs for the prefill (gemm_cublas.cpp): row-major C [M, N] (+)= A [M, K] op(B), B stored
// [N, K] (b_nk: an nn::Linear weight, op = transpose) or [K, N]; C fp32, fp32 accumulation.
//   kBF16: A, B bf16 (the projections and experts);  kF32: fp32, exact (the router: routing near
//   a tie must not move);  kTF32: fp32 on TF32 tensor cores (the latent attention's products).
enum class GemmType { kBF16, kF32, kTF32 };
void gemm(cublasHandle_t h, GemmType t, int M, int N, int K, const void* A, int64_t lda,
          const void* B, int64_t ldb, bool b_nk, float* C, int64_t ldc, bool accumulate);
// `batch` such products, operand i at A + i * stride_a (elements; likewise B, C), C = alpha A
// op(B).
void gemm_batched(cublasHandle_t h, GemmType t, int batch, int M, int N, int K, const void* A,
                  int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b,
                  bool b_nk, float* C, int64_t ldc, int64_t stride_c, float alpha);

// --- prefill (prefill.cu): one chunk of n rows of ONE slot ---
struct KdaPrefill {
  int n, H, K, W;     // value dim = K
  const float* proj;  // [n, proj_stride] as KdaStep
  int64_t proj_stride;
  const float *f, *z;                    // [n, HK]
  const bf16 *conv_q, *conv_k, *conv_v;  // [HK, W]
  const float *a_log, *dt_bias;          // [H], [HK]
  const bf16 *g_bias, *o_norm;           // [HK], [K]
  float* tails;                          // this slot's [3, W-1, HK]
  float norm_eps;
  float *q, *k, *v, *g, *beta;  // the chunk kernel's inputs: [n, H, K] ([n, H] for beta)
  const float* o;               // its output [n, H, K]
  bf16* out;                    // [n, HK]
};
// q, k, v (short conv over [tail, rows], silu, l2norm), g (log decay), beta; reads the old tails.
void kda_prefill_prep(const KdaPrefill& a, cudaStream_t s);
// The tails after the chunk's rows (after kda_prefill_prep, which reads the old ones).
void kda_prefill_tails(const KdaPrefill& a, cudaStream_t s);
// out = rmsnorm(o) * o_norm * sigmoid(z + g_bias).
void kda_prefill_out(const KdaPrefill& a, cudaStream_t s);
// Rows [0, n) of proj (kv_a at column kv_col) -> latent rows `rows` [n, rank + rope].
void mla_prefill_append(const float* proj, int64_t proj_stride, int64_t kv_col, int n, int rank,
                        int rope, const bf16* kv_norm, float eps, bf16* rows, cudaStream_t s);
void bf16_to_f32(const bf16* x, int64_t n, float* y, cudaStream_t s);
void f32_to_bf16(const float* x, int64_t n, bf16* y, cudaStream_t s);
// The rope part of the absorbed queries: qa[i, h, rank + j] = scale * q_rope[i, h, j] (proj rows
// as MlaStep's; qa [n, H, rank + rope]).
void mla_prefill_rope(const float* proj, int64_t proj_stride, int n, int H, int nope, int rope,
                      int rank, float scale, float* qa, cudaStream_t s);
// scores [rows, cols]: row r is query q0 + r / heads of the chunk, which sees the first
// first + q0 + r / heads + 1 columns; softmax over those in place, zero after.
void causal_softmax(float* scores, int rows, int64_t cols, int heads, int64_t first, int q0,
                    cudaStream_t s);
void sigmoid_inplace(float* x, int64_t n, cudaStream_t s);
// xs[j] = x[sorted[j] / top_k] (bf16 rows of d), inv[sorted[j]] = j, for j < slots_n.
void moe_gather(const bf16* x, int d, int top_k, const int* sorted, int slots_n, bf16* xs, int* inv,
                cudaStream_t s);
// h[b] += sum_k weights[b, k] ys[inv[b * top_k + k]].
void moe_combine_sorted(const float* ys, const int* inv, const float* weights, int B, int top_k,
                        int d, float* h, cudaStream_t s);

}  // namespace kimi::inference::engine::cuda
