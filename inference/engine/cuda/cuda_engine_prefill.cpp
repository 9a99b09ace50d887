// The CUDA engine's chunked prefill (decode_engine.h prefill): a decode step's pass over every
// layer with the n rows of one chunk of ONE sequence, where
//   - the dense projections, the shared expert and the routed experts are cuBLAS GEMMs (bf16
//     operands, fp32 accumulation and output; the router an exact fp32 GEMM);
//   - KDA runs the project's chunk delta rule (core/cuda/delta_rule) from the slot's fp32 state,
//     writing the final state back in place; the short convs read [tail, rows] and the tails are
//     then replaced by the chunk's last inputs. Its inputs q, k, v, g, beta stay fp32 (TF32
//     products): the decode step computes them in fp32, and bf16 inputs move the state ~8x
//     more (2^-9 against 2^-11 per operand), enough to flip a near-tie MoE routing downstream;
//     the KDA kernels are a small part of a prefill's time next to the GEMMs;
//   - MLA appends all n latent rows to the cache first, absorbs the queries (per-head batched
//     fp32 GEMMs), then attends in the absorbed form with the n queries x heads stacked as the
//     rows of two TF32 GEMMs per tile of queries (scores over the cached rows 0 .. L + tile end,
//     a causal softmax that lets query i see L + i + 1 rows, then probabilities x latent), so
//     no score matrix larger than a tile exists; the tile's scores do go through memory (a
//     flash-style kernel that keeps them on chip is the next step).
// The only host synchronisation inside a chunk is one per MoE layer: the experts' row counts
// (which size the per-expert GEMMs) are read back after the routing.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/cuda/delta_rule/delta_rule.cuh"
#include "core/cuda/runtime/allocator.h"
#include "core/tensor/error.h"
#include "inference/engine/cuda/cuda_engine.h"

namespace kimi::inference::engine::cuda {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int64_t kMargin = 512 << 20;
// Scores of one attention tile (queries x heads x cached rows), fp32: 256 MiB. A 1M context
// with 32 heads still fits a tile of 2 queries.
constexpr int64_t kScoreFloats = int64_t{64} << 20;

double gib(int64_t b) { return static_cast<double>(b) / kGiB; }

struct Carver {
  char* base = nullptr;
  int64_t at = 0;
  template <class T>
  T* take(int64_t count) {
    at = (at + 255) / 256 * 256;
    T* p = base ? reinterpret_cast<T*>(base + at) : nullptr;
    at += std::max<int64_t>(count, 1) * static_cast<int64_t>(sizeof(T));
    return p;
  }
};

}  // namespace

void CudaEngine::set_prefill_chunk(int64_t tokens) {
  check_prefill_chunk(tokens);
  prefill_chunk_ = tokens;
}

// The buffers of a chunk of n rows, in bytes; with `pb`, also carved out of pwork_ into it.
int64_t CudaEngine::prefill_bytes(int64_t n, PrefillBuffers* pb) const {
  const models::KimiLinearConfig& c = layout_.config;
  const int64_t d = c.hidden_size, HK = c.kda_num_heads * c.kda_head_dim, H = c.kda_num_heads;
  const int64_t Hm = c.num_attention_heads, D = c.kv_lora_rank + c.qk_rope_head_dim;
  const int64_t K = std::max<int64_t>(c.num_experts_per_token, 1), S = n * K;
  const int64_t h = c.moe_intermediate_size, E = std::max<int64_t>(c.num_experts, 1);
  const int64_t cols = std::max(
      {layout_.kda_rows, layout_.mla_rows, 2 * layout_.mlp_hidden, 2 * layout_.shared_hidden});
  Carver k{pb ? pwork_.get<char>() : nullptr};
  PrefillBuffers t{};
  t.tokens = k.take<int>(n);
  t.h = k.take<float>(n * d), t.x = k.take<bf16>(n * d), t.xf = k.take<float>(n * d);
  t.proj = k.take<float>(n * cols);
  t.f = k.take<float>(n * HK), t.z = k.take<float>(n * HK);
  t.q = k.take<float>(n * HK), t.k = k.take<float>(n * HK), t.v = k.take<float>(n * HK);
  t.g = k.take<float>(n * HK), t.beta = k.take<float>(n * H), t.o = k.take<float>(n * HK);
  t.attn = k.take<bf16>(n * std::max(HK, Hm * c.v_head_dim));
  t.qa = k.take<float>(n * Hm * D), t.olat = k.take<float>(n * Hm * c.kv_lora_rank);
  t.kv_b = k.take<float>(Hm * (c.qk_nope_head_dim + c.v_head_dim) * c.kv_lora_rank);
  t.up = k.take<float>(n * Hm * c.v_head_dim);
  t.scores = k.take<float>(n * E);  // the router's
  t.ids = k.take<int>(S), t.wts = k.take<float>(S);
  t.plan.n_active = k.take<int>(1), t.plan.active = k.take<int>(E);
  t.plan.offsets = k.take<int>(E + 1), t.plan.sorted = k.take<int>(S);
  t.inv = k.take<int>(S);
  t.xs = k.take<bf16>(S * d);
  t.gu = k.take<float>(S * 2 * h);
  t.act = k.take<bf16>(std::max({S * h, n * layout_.mlp_hidden, n * layout_.shared_hidden}));
  t.ys = k.take<float>(S * d);
  t.logits = k.take<float>(c.vocab_size);
  if (pb) *pb = t;
  return k.at;
}

void CudaEngine::release_prefill() {
  pwork_.reset(), pattn_.reset();
  // The chunk delta rule's workspaces come from the core caching allocator and stay cached
  // between prefills (a timed prefill mallocs nothing); hand them back here, with the engine's
  // own prefill buffers, so that allocate_slots and max_slots see the memory again.
  kimi::cuda::empty_cache();
  prefill_rows_ = prefill_context_ = 0;
  latent_f32_ = score_tile_ = nullptr;
  score_floats_ = 0;
}

// Buffers for chunks of n rows and the attention over `context` cached rows; grown, not shrunk.
void CudaEngine::reserve_prefill(int64_t n, int64_t context) {
  const models::KimiLinearConfig& c = layout_.config;
  const int64_t Hm = c.num_attention_heads, D = c.kv_lora_rank + c.qk_rope_head_dim;
  const bool has_mla = caches_.mla_layers > 0;
  auto fail = [&](int64_t need) {
    throw UserError(
        fmt::format("decode engine: a prefill chunk of {} tokens at {} tokens of context needs "
                    "{:.2f} GiB of buffers, the device has {:.2f} GiB free (a smaller prefill "
                    "chunk needs less)",
                    n, context, gib(need), gib(free_device_bytes())));
  };
  if (n > prefill_rows_) {
    pwork_.reset(), prefill_rows_ = 0;
    const int64_t need = prefill_bytes(n, nullptr);
    if (need + kMargin > free_device_bytes()) fail(need);
    pwork_ = DeviceBuffer(need);
    prefill_bytes(n, &pb_);
    prefill_rows_ = n;
  }
  if (has_mla && context > prefill_context_) {
    pattn_.reset(), prefill_context_ = 0;
    // At least one query's scores over the whole context; at most kScoreFloats or all n.
    const int64_t scores = std::max(Hm * context, std::min(kScoreFloats, n * Hm * context));
    Carver k;
    k.take<float>(context * D), k.take<float>(scores);
    if (k.at + kMargin > free_device_bytes()) fail(k.at + pwork_.bytes());
    pattn_ = DeviceBuffer(k.at);
    Carver cut{pattn_.get<char>()};
    latent_f32_ = cut.take<float>(context * D), score_tile_ = cut.take<float>(scores);
    score_floats_ = scores, prefill_context_ = context;
  }
}

void CudaEngine::prefill(int32_t slot, const std::vector<int32_t>& tokens,
                         std::vector<float>* logits) {
  check_prefill(caches_, slot, slot >= 0 && slot < caches_.slots ? host_len_[slot] : 0, tokens,
                layout_.config.vocab_size);
  const int64_t P = static_cast<int64_t>(tokens.size());
  const auto chunks = prefill_chunks(P, prefill_chunk_);
  reserve_prefill(std::min(P, prefill_chunk_), host_len_[slot] + P);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto [b, e] = chunks[i];
    const int n = static_cast<int>(e - b);
    KIMI_CUDA_CHECK(cudaMemcpyAsync(pb_.tokens, tokens.data() + b, n * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, stream_));
    run_prefill_chunk(slot, host_len_[slot], n, i + 1 == chunks.size());
    // The next chunk's attention reads this one's rows: L is the host's count (no device read).
    host_len_[slot] += n;
    // The token copy above is from pageable memory (staged before the call returns), so the
    // next chunk may overwrite pb_.tokens: stream order keeps this chunk's reads first.
  }
  const int len = static_cast<int>(host_len_[slot]);
  KIMI_CUDA_CHECK(cudaMemcpyAsync(lengths_.get<int>() + slot, &len, sizeof(int),
                                  cudaMemcpyHostToDevice, stream_));
  if (logits) {
    logits->resize(layout_.config.vocab_size);
    KIMI_CUDA_CHECK(cudaMemcpyAsync(logits->data(), pb_.logits,
                                    layout_.config.vocab_size * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream_));
  }
  KIMI_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaEngine::run_prefill_chunk(int slot, int64_t L, int n, bool logits) {
  const models::KimiLinearConfig& c = layout_.config;
  const int d = static_cast<int>(c.hidden_size);
  const float eps = static_cast<float>(c.rms_norm_eps);
  embed(pb_.tokens, w<bf16>(layout_.embed), n, d, pb_.h, stream_);
  for (size_t i = 0; i < layout_.layers.size(); ++i) {
    const LayerOffsets& o = layout_.layers[i];
    rms_norm(pb_.h, d, w<bf16>(o.input_norm), n, d, eps, pb_.x, nullptr, stream_);
    if (o.is_mla)
      prefill_mla(static_cast<int>(i), slot, L, n);
    else
      prefill_kda(static_cast<int>(i), slot, n);
    rms_norm(pb_.h, d, w<bf16>(o.post_norm), n, d, eps, pb_.x, o.is_moe ? pb_.xf : nullptr,
             stream_);
    prefill_ffn(static_cast<int>(i), n);
  }
  if (!logits) return;
  // Only the last row's logits: the decode step's norm and GEMV on that one row.
  rms_norm(pb_.h + static_cast<int64_t>(n - 1) * d, d, w<bf16>(layout_.final_norm), 1, d, eps,
           pb_.x, nullptr, stream_);
  small_gemv(w<bf16>(layout_.lm_head), static_cast<int>(c.vocab_size), d, pb_.x, false, d, 1,
             pb_.logits, c.vocab_size, false);
}

void CudaEngine::prefill_kda(int layer, int slot, int n) {
  const models::KimiLinearConfig& c = layout_.config;
  const LayerOffsets& o = layout_.layers[layer];
  const int d = static_cast<int>(c.hidden_size), K = static_cast<int>(c.kda_head_dim);
  const int H = static_cast<int>(c.kda_num_heads), HK = H * K;
  const int rows = static_cast<int>(layout_.kda_rows);
  gemm(blas_, GemmType::kBF16, n, rows, d, pb_.x, d, w<bf16>(o.kda_in), d, true, pb_.proj, rows,
       false);
  // f_b and g_b read fp32 inputs (f_a, g_a) as in the decode step: its GEMV, over n rows.
  gemv(w<bf16>(o.f_b), HK, K, pb_.proj + 3 * HK, true, rows, n, pb_.f, HK, false, stream_);
  gemv(w<bf16>(o.g_b), HK, K, pb_.proj + 3 * HK + K, true, rows, n, pb_.z, HK, false, stream_);
  const int64_t ki = caches_.kda_index[layer];
  KdaPrefill a{};
  a.n = n, a.H = H, a.K = K, a.W = static_cast<int>(c.short_conv_kernel_size);
  a.proj = pb_.proj, a.proj_stride = rows, a.f = pb_.f, a.z = pb_.z;
  a.conv_q = w<bf16>(o.q_conv), a.conv_k = w<bf16>(o.k_conv), a.conv_v = w<bf16>(o.v_conv);
  a.a_log = w<float>(o.a_log), a.dt_bias = w<float>(o.dt_bias);
  a.g_bias = w<bf16>(o.g_b_bias), a.o_norm = w<bf16>(o.o_norm);
  a.tails = kda_tails_.get<float>() + (ki * caches_.slots + slot) * caches_.conv_elems;
  a.norm_eps = static_cast<float>(c.rms_norm_eps);
  a.q = pb_.q, a.k = pb_.k, a.v = pb_.v, a.g = pb_.g, a.beta = pb_.beta, a.o = pb_.o;
  a.out = pb_.attn;
  kda_prefill_prep(a, stream_);
  kda_prefill_tails(a, stream_);
  // The slot's state is h0 and ht at once: each block of the chunk kernels reads its tile of
  // h0 before its first chunk and writes the same tile of ht after its last.
  float* state = kda_state_.get<float>() + (ki * caches_.slots + slot) * caches_.state_elems;
  RecurrenceDims dims{
      1, n, H, K, K, GateKind::kPerChannel, 1.0 / std::sqrt(static_cast<double>(K))};
  kimi::cuda::delta_rule_chunk_fwd<float>(dims, pb_.q, pb_.k, pb_.v, pb_.g, pb_.beta, state, pb_.o,
                                          state, stream_);
  kda_prefill_out(a, stream_);
  gemm(blas_, GemmType::kBF16, n, d, HK, pb_.attn, HK, w<bf16>(o.o_proj), HK, true, pb_.h, d, true);
}

void CudaEngine::prefill_mla(int layer, int slot, int64_t L, int n) {
  const models::KimiLinearConfig& c = layout_.config;
  const LayerOffsets& o = layout_.layers[layer];
  const int d = static_cast<int>(c.hidden_size), rows = static_cast<int>(layout_.mla_rows);
  const int H = static_cast<int>(c.num_attention_heads),
            nope = static_cast<int>(c.qk_nope_head_dim);
  const int rope = static_cast<int>(c.qk_rope_head_dim), vd = static_cast<int>(c.v_head_dim);
  const int rank = static_cast<int>(c.kv_lora_rank), D = rank + rope;
  const float scale = 1.f / std::sqrt(static_cast<float>(nope + rope));
  gemm(blas_, GemmType::kBF16, n, rows, d, pb_.x, d, w<bf16>(o.mla_in), d, true, pb_.proj, rows,
       false);
  bf16* cache = mla_rows_.get<bf16>() +
                (caches_.mla_index[layer] * caches_.slots + slot) * caches_.max_tokens * D;
  mla_prefill_append(pb_.proj, rows, static_cast<int64_t>(H) * (nope + rope), n, rank, rope,
                     w<bf16>(o.kv_norm), static_cast<float>(c.mla_norm_eps), cache + L * D,
                     stream_);
  // Absorb (as mla_decode's absorb kernel, exact fp32 like it): per head h,
  // qa_h[:, :rank] = scale q_nope,h W_k,h with W_k,h = kv_b rows h (nope + vd) .. + nope, and
  // qa_h[:, rank:] = scale q_rope,h. kv_b in fp32 once per layer and chunk.
  const int64_t head_rows = static_cast<int64_t>(nope + vd) * rank;
  bf16_to_f32(w<bf16>(o.kv_b), H * head_rows, pb_.kv_b, stream_);
  gemm_batched(blas_, GemmType::kF32, H, n, rank, nope, pb_.proj, rows, nope + rope, pb_.kv_b, rank,
               head_rows, false, pb_.qa, static_cast<int64_t>(H) * D, D, scale);
  mla_prefill_rope(pb_.proj, rows, n, H, nope, rope, rank, scale, pb_.qa, stream_);
  // Attention over the latent rows 0 .. L + n, in fp32 (TF32 products), by tiles of queries.
  const int64_t N_all = L + n;
  bf16_to_f32(cache, N_all * D, latent_f32_, stream_);
  const int64_t tile = std::clamp<int64_t>(score_floats_ / (H * N_all), 1, n);
  for (int q0 = 0; q0 < n; q0 += static_cast<int>(tile)) {
    const int q1 = static_cast<int>(std::min<int64_t>(n, q0 + tile));
    const int M = (q1 - q0) * H;
    const int N = static_cast<int>(L + q1);  // the rows the tile's last query sees
    gemm(blas_, GemmType::kTF32, M, N, D, pb_.qa + static_cast<int64_t>(q0) * H * D, D, latent_f32_,
         D, true, score_tile_, N, false);
    causal_softmax(score_tile_, M, N, H, L, q0, stream_);
    gemm(blas_, GemmType::kTF32, M, rank, N, score_tile_, N, latent_f32_, D, false,
         pb_.olat + static_cast<int64_t>(q0) * H * rank, rank, false);
  }
  // Up (exact fp32, as the decode's up kernel): out_h = o_lat,h W_v,h^T, W_v,h = kv_b rows
  // h (nope + vd) + nope .. + vd; then bf16 for o_proj.
  gemm_batched(blas_, GemmType::kF32, H, n, vd, rank, pb_.olat, static_cast<int64_t>(H) * rank,
               rank, pb_.kv_b + static_cast<int64_t>(nope) * rank, rank, head_rows, true, pb_.up,
               static_cast<int64_t>(H) * vd, vd, 1.f);
  const int hv = H * vd;
  f32_to_bf16(pb_.up, static_cast<int64_t>(n) * hv, pb_.attn, stream_);
  gemm(blas_, GemmType::kBF16, n, d, hv, pb_.attn, hv, w<bf16>(o.o_proj), hv, true, pb_.h, d, true);
}

void CudaEngine::prefill_ffn(int layer, int n) {
  const models::KimiLinearConfig& c = layout_.config;
  const LayerOffsets& o = layout_.layers[layer];
  const int d = static_cast<int>(c.hidden_size);
  if (o.is_moe) {
    const int E = static_cast<int>(c.num_experts), K = static_cast<int>(c.num_experts_per_token);
    const int h = static_cast<int>(c.moe_intermediate_size), S = n * K;
    // Router in exact fp32 (as moe_router: a routing near a tie must not depend on TF32).
    gemm(blas_, GemmType::kF32, n, E, d, pb_.xf, d, w<float>(o.router), d, true, pb_.scores, E,
         false);
    sigmoid_inplace(pb_.scores, static_cast<int64_t>(n) * E, stream_);
    moe_topk(pb_.scores, w<float>(o.router_bias), n, E, K, c.moe_renormalize,
             static_cast<float>(c.routed_scaling_factor), pb_.ids, pb_.wts, stream_);
    moe_plan(pb_.ids, S, E, pb_.plan, stream_);
    moe_gather(pb_.x, d, K, pb_.plan.sorted, S, pb_.xs, pb_.inv, stream_);
    // The one host synchronisation of the layer: the per-expert GEMMs' row counts.
    int n_active = 0;
    std::vector<int> active(E), offsets(E + 1);
    KIMI_CUDA_CHECK(cudaMemcpyAsync(&n_active, pb_.plan.n_active, sizeof(int),
                                    cudaMemcpyDeviceToHost, stream_));
    KIMI_CUDA_CHECK(cudaMemcpyAsync(active.data(), pb_.plan.active, E * sizeof(int),
                                    cudaMemcpyDeviceToHost, stream_));
    KIMI_CUDA_CHECK(cudaMemcpyAsync(offsets.data(), pb_.plan.offsets, (E + 1) * sizeof(int),
                                    cudaMemcpyDeviceToHost, stream_));
    KIMI_CUDA_CHECK(cudaStreamSynchronize(stream_));
    const bf16* experts = w<bf16>(o.experts);
    const int64_t stride = o.expert_stride / 2;  // elements
    for (int g = 0; g < n_active; ++g) {
      const int off = offsets[g], rows_e = offsets[g + 1] - off;
      const bf16* we = experts + active[g] * stride;
      gemm(blas_, GemmType::kBF16, rows_e, 2 * h, d, pb_.xs + static_cast<int64_t>(off) * d, d, we,
           d, true, pb_.gu + static_cast<int64_t>(off) * 2 * h, 2 * h, false);
    }
    swiglu(pb_.gu, S, h, pb_.act, stream_);
    for (int g = 0; g < n_active; ++g) {
      const int off = offsets[g], rows_e = offsets[g + 1] - off;
      const bf16* we = experts + active[g] * stride + 2 * static_cast<int64_t>(h) * d;
      gemm(blas_, GemmType::kBF16, rows_e, d, h, pb_.act + static_cast<int64_t>(off) * h, h, we, h,
           true, pb_.ys + static_cast<int64_t>(off) * d, d, false);
    }
    moe_combine_sorted(pb_.ys, pb_.inv, pb_.wts, n, K, d, pb_.h, stream_);
    if (o.mlp_gate_up < 0) return;  // no shared expert
  }
  const int hid = static_cast<int>(o.is_moe ? layout_.shared_hidden : layout_.mlp_hidden);
  gemm(blas_, GemmType::kBF16, n, 2 * hid, d, pb_.x, d, w<bf16>(o.mlp_gate_up), d, true, pb_.proj,
       2 * hid, false);
  swiglu(pb_.proj, n, hid, pb_.act, stream_);
  gemm(blas_, GemmType::kBF16, n, d, hid, pb_.act, hid, w<bf16>(o.mlp_down), hid, true, pb_.h, d,
       true);
}

}  // namespace kimi::inference::engine::cuda
