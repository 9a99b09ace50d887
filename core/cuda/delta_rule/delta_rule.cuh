// CUDA kernels of the gated delta rule (DeltaNet, GDN, KDA: GateKind kNone / kScalar /
// kPerChannel) and of the gated linear recurrence, with raw pointers and a stream, in the
// layout of the CPU kernels (core/cpu/delta_rule.h): activations [B,T,H,*] row-major,
// states [B,H,K,V]. Math: docs/math.md#mixers, docs/math.md#chunkwise (chunkwise WY/UT form) and
// docs/math.md#recurrent-backward (backward). Ti (float or __nv_bfloat16) is the type of q, k, v,
// g, beta, o and of their gradients; states (h0, ht, dht, dh0) are always fp32, and every kernel
// accumulates in fp32. Limits: K <= 128 (the recurrent kernels keep a state column of K values in
// registers; the chunk kernels tile K in shared memory); V any size for the recurrent form, V <=
// 128 for the chunk form. Plain C++ callers may include this header (no device code in it).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "core/kernels/recurrence.h"

namespace kimi::cuda {

// --- recurrent (token by token) form: the GPU oracle, decoding, and short sequences --------
// One thread per state column (the delta rule acts on each column of S independently), the K
// values of the column in registers. h0 nullptr = zero state; ht nullptr = not wanted.
template <class Ti>
void delta_rule_recurrent_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                              const Ti* g, const Ti* beta, const float* h0, Ti* o, float* ht,
                              cudaStream_t stream);

// Backward (docs/math.md#recurrent-backward). Reruns the forward to keep the states every 64 steps
// (its own checkpoint interval, not d.chunk), then walks those spans backwards, recomputing the
// states inside each into a workspace; dS lives in shared memory. dht nullptr = zero; dh0 nullptr =
// not wanted; dg ignored (may be nullptr) when the gate is kNone. Workspaces come from the caching
// allocator.
template <class Ti>
void delta_rule_recurrent_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                              const Ti* g, const Ti* beta, const float* h0, const Ti* do_,
                              const float* dht, Ti* dq, Ti* dk, Ti* dv, Ti* dg, Ti* dbeta,
                              float* dh0, cudaStream_t stream);

// One decoding step (d.T == 1) that updates `state` [B,H,K,V] in place: read once, written once.
template <class Ti>
void delta_rule_decode_step(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                            const Ti* g, const Ti* beta, float* state, Ti* o, cudaStream_t stream);
// The same step from h_in into h_out (may be the same array): what the delta_rule op runs for
// T = 1 from a given state, so a decode step through the op moves the state once each way.
template <class Ti>
void delta_rule_decode_step(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                            const Ti* g, const Ti* beta, const float* h_in, float* h_out, Ti* o,
                            cudaStream_t stream);

// Gated linear recurrence (Mamba2 SSD core / simple_gla / GLA): S = Diag(exp(g)) S + k v^T.
template <class Ti>
void linear_recurrence_recurrent_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                     const Ti* g, const float* h0, Ti* o, float* ht,
                                     cudaStream_t stream);
template <class Ti>
void linear_recurrence_recurrent_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                     const Ti* g, const float* h0, const Ti* do_, const float* dht,
                                     Ti* dq, Ti* dk, Ti* dv, Ti* dg, float* dh0,
                                     cudaStream_t stream);

// Chunkwise form of the gated linear recurrence (chunks of 64 tokens; K, V <= 128; stages in
// core/cuda/linear_recurrence/linear_recurrence_chunk.cuh): the delta rule's chunk algorithm
// without the WY/UT part. TF32 products with fp32 accumulation (expect ~1e-3 relative errors
// against fp32 references). Same arguments as the recurrent form: h0 / dht nullptr = zero, ht / dh0
// nullptr = not wanted, dg unused (may be nullptr) for kNone. Workspaces (caching allocator): per
// chunk-head one K x V state of Ti (two for the backward) and 64 x 64 + K fp32, per token-head
// 2 K values of Ti.
template <class Ti>
void linear_recurrence_chunk_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                 const Ti* g, const float* h0, Ti* o, float* ht,
                                 cudaStream_t stream);
template <class Ti>
void linear_recurrence_chunk_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                                 const Ti* g, const float* h0, const Ti* do_, const float* dht,
                                 Ti* dq, Ti* dk, Ti* dv, Ti* dg, float* dh0, cudaStream_t stream);

// --- chunkwise form (docs/math.md#chunkwise), chunks of 64 tokens whatever d.chunk says (the ops
// refuse another chunk size on CUDA: core/cuda/delta_rule/recurrence_plan.h) ----------------------
// Two kernels: (1) per (chunk, head), in parallel: cumulative gates, A_kk and A_qk (pairwise
// decays as exponent differences only), T = (I + A)^-1 Diag(beta) by blocked forward
// substitution, W = T (exp(G) k), U = T v; (2) per (head, V tile), sequential over chunks:
// V' = U - W S, O = (scale q exp(G)) S + tril(A_qk) V', S <- exp(G_C) S + (exp(G_C - G) k)^T V'.
// The products run on the tensor cores in TF32 (fp32 accumulate): expect relative errors
// near 1e-3 against fp32 references. `events` (benchmarks): recorded before the first kernel,
// between the two and after the second.
struct ChunkFwdEvents {
  cudaEvent_t start, mid, end;
};
template <class Ti>
void delta_rule_chunk_fwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                          const Ti* g, const Ti* beta, const float* h0, Ti* o, float* ht,
                          cudaStream_t stream, const ChunkFwdEvents* events = nullptr);

// The forward's per-chunk stage alone (parity tests and benchmarks of the intra kernels): what it
// hands the state kernel, into caller buffers: W, Gq, Kd [B,T,H,K] and U [B,T,H,V] (Ti), A_qk
// (fp32 [B*H][NC][64][64], lower incl. the diagonal) and exp(G_last) (fp32 [B*H][NC][K]), with
// NC = ceil(T / 64). The same kernel as delta_rule_chunk_fwd's (KIMI_CUDA_INTRA_KERNEL applies).
template <class Ti>
void delta_rule_chunk_intra(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                            const Ti* g, const Ti* beta, Ti* W, Ti* U, Ti* Gq, Ti* Kd, float* Aqk,
                            float* EgL, cudaStream_t stream);

// Backward of the chunkwise form (same arguments as delta_rule_recurrent_bwd: dht nullptr =
// zero, dh0 nullptr = not wanted, dg unused (may be nullptr) for kNone). Recomputes the
// forward's per-chunk matrices and the chunk-boundary states, walks the chunks backwards once
// for the state gradients (per head and V tile), then computes every input gradient per chunk
// in parallel (the WY/UT backward and the backward of the decayed Gram matrices; stages in
// delta_rule_chunk_bwd.cuh). TF32 products: relative errors near 1e-3 against fp32
// references (measured <= 6.3e-4; bf16 <= 3.8e-3). Workspaces (caching allocator): per
// token-head 3 K + 3 V values of Ti and 3 D + 192 fp32 (D = 64 or 128, the padded head size),
// per chunk-head two K x V states of Ti: ~5 GB at bf16, H=16, K=V=128, 65,536 tokens.
// `events` (benchmarks): e[0] before the first kernel, e[1..6] after the six stages.
struct ChunkBwdEvents {
  cudaEvent_t e[7];
};
// `dh_out` (parity tests): the state gradients the B1 walk hands the later stages, dh_c = the
// gradient of the state after chunk c, copied out as [B*H][NC][K][V] (Ti), NC = ceil(T / 64).
template <class Ti>
void delta_rule_chunk_bwd(const RecurrenceDims& d, const Ti* q, const Ti* k, const Ti* v,
                          const Ti* g, const Ti* beta, const float* h0, const Ti* do_,
                          const float* dht, Ti* dq, Ti* dk, Ti* dv, Ti* dg, Ti* dbeta, float* dh0,
                          cudaStream_t stream, const ChunkBwdEvents* events = nullptr,
                          Ti* dh_out = nullptr);

// The chunk backward's B1 walk (dh_c, dV'): bf16 with K, V multiples of 8 runs it on tensor
// cores (delta_rule_chunk_bwd_dh_mma.cu), everything else and KIMI_CUDA_BWD_DH_KERNEL=old on the
// WMMA TF32 kernel. The variable is read once, at the first backward; tests pick either kernel
// with force_chunk_bwd_dh_kernel (kEnv: back to the variable).
enum class ChunkBwdDhKernel { kEnv, kNew, kOld };
void force_chunk_bwd_dh_kernel(ChunkBwdDhKernel k);
bool chunk_bwd_dh_old();  // the choice in force now

// B3 (the UT / WY backward) and B4 (the Gram backward): bf16 inputs run their per-chunk
// products on bf16 mma.sync (core/cuda/delta_rule/bwd_mma.cuh), fp32 inputs and
// KIMI_CUDA_BWD_WY_KERNEL=old / KIMI_CUDA_BWD_GRAM_KERNEL=old on WMMA TF32. Read once, at the
// first backward; the force_* functions as for B1.
void force_chunk_bwd_wy_kernel(ChunkBwdDhKernel k);
void force_chunk_bwd_gram_kernel(ChunkBwdDhKernel k);
bool chunk_bwd_wy_old();
bool chunk_bwd_gram_old();
// B2 (the products with the chunk states: dGq, dW, dKd, dA_qk): bf16 mma.sync for bf16 inputs
// (its operands are stored in bf16, so only the order of the fp32 sums changes), WMMA TF32 for
// fp32 inputs and KIMI_CUDA_BWD_DHV_KERNEL=old. Read once; force_* as for B1.
void force_chunk_bwd_dhv_kernel(ChunkBwdDhKernel k);
bool chunk_bwd_dhv_old();

}  // namespace kimi::cuda
