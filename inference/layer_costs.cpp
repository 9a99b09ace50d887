// Per-layer bytes and FLOPs. Shapes as models::parameter_count (Hugging Face modeling_kimi.py);
// a matrix product of P parameters costs 2 P FLOPs per token. KDA decode per head: decay K V,
// S^T k 2 K V, S += k u^T 2 K V, S^T q 2 K V = 7 K V; KDA chunk per head and token: the paper's
// eq. 13, 6 K V + 3 C K + C^2 (C = 64); causal attention: 2 FLOPs per multiply-add over the
// T p + T (T + 1) / 2 query-key pairs of a chunk.
#include "inference/layer_costs.h"

#include <cmath>

namespace kimi::inference {

using models::KimiLinearConfig;

namespace {

constexpr int64_t kChunk = 64;  // KDA chunk size of the prefill kernels (paper: C = 64)

struct Counts {
  int64_t kda = 0, mla = 0, moe = 0, dense = 0;
};

Counts layer_counts(const KimiLinearConfig& c) {
  Counts n;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    (c.is_mla(i) ? n.mla : n.kda) += 1;
    (c.is_moe(i) ? n.moe : n.dense) += 1;
  }
  return n;
}

// The layer types present (count > 0), in the model's order of appearance.
std::vector<LayerCost> assemble(const Counts& n, const Work& kda, const Work& mla, const Work& moe,
                                const Work& dense, const Work& embed_head) {
  std::vector<LayerCost> out;
  auto add = [&](const char* kind, int64_t count, const Work& w) {
    if (count > 0) out.push_back({kind, count, w});
  };
  add("kda", n.kda, kda);
  add("mla", n.mla, mla);
  add("moe_ffn", n.moe, moe);
  add("dense_ffn", n.dense, dense);
  add("embed_head", 1, embed_head);
  return out;
}

// One GPU's share of `all` parameters over n GPUs: the split part plus the replicated `shared`.
double split(double n, double all, double shared) { return (all - shared) / n + shared; }

}  // namespace

Work& Work::operator+=(const Work& o) {
  weight_bytes += o.weight_bytes, cache_bytes += o.cache_bytes, other_bytes += o.other_bytes;
  gemm_flops += o.gemm_flops, attn_flops += o.attn_flops, recur_flops += o.recur_flops;
  return *this;
}

Work operator*(double s, const Work& w) {
  return {s * w.weight_bytes, s * w.cache_bytes, s * w.other_bytes,
          s * w.gemm_flops,   s * w.attn_flops,  s * w.recur_flops};
}

Work total(const std::vector<LayerCost>& layers) {
  Work sum;
  for (const LayerCost& l : layers) sum += static_cast<double>(l.count) * l.work;
  return sum;
}

LayerParams layer_params(const KimiLinearConfig& c) {
  LayerParams p;
  const int64_t d = c.hidden_size, hk = c.kda_num_heads * c.kda_head_dim, kd = c.kda_head_dim;
  // q, k, v, o; f_a/f_b and g_a/g_b (low rank through head_dim); b_proj. Other: 3 convs, A_log,
  // dt_bias, o_norm, and the block's input RMSNorm.
  p.kda_matmul = 4 * d * hk + 2 * (d * kd + kd * hk) + d * c.kda_num_heads;
  p.kda_shared = 2 * d * kd;
  p.kda_other = 3 * hk * c.short_conv_kernel_size + c.kda_num_heads + hk + kd + d;
  p.input_norm = d;
  const int64_t H = c.num_attention_heads, qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  const int64_t q = c.q_lora_rank > 0 ? d * c.q_lora_rank + c.q_lora_rank * H * qk : d * H * qk;
  p.mla_matmul = q + d * (c.kv_lora_rank + c.qk_rope_head_dim) +
                 c.kv_lora_rank * H * (c.qk_nope_head_dim + c.v_head_dim) + H * c.v_head_dim * d;
  p.mla_shared =
      (c.q_lora_rank > 0 ? d * c.q_lora_rank : 0) + d * (c.kv_lora_rank + c.qk_rope_head_dim);
  p.mla_other = (c.q_lora_rank > 0 ? c.q_lora_rank : 0) + c.kv_lora_rank + d;
  p.expert = 3 * d * c.moe_intermediate_size;
  p.router = c.num_experts * d;
  p.router_bias = c.num_experts;
  p.dense_ffn = 3 * d * c.intermediate_size;
  p.ffn_norm = d;
  p.head = c.vocab_size * d;  // untied: lm_head; tied: the embedding table read again
  p.final_norm = d;
  return p;
}

double experts_touched(const KimiLinearConfig& c, int64_t tokens) {
  if (c.num_experts <= 0 || tokens <= 0) return 0;
  if (tokens == 1) return static_cast<double>(c.num_experts_per_token);
  const double E = static_cast<double>(c.num_experts);
  const double miss = std::log1p(-static_cast<double>(c.num_experts_per_token) / E);
  return E * -std::expm1(static_cast<double>(tokens) * miss);
}

std::vector<LayerCost> decode_step(const KimiLinearConfig& c, int64_t batch, int64_t context,
                                   const Dtypes& dt, int gpus) {
  const LayerParams p = layer_params(c);
  const models::CacheSizes s = models::cache_sizes(c, dt.state, dt.latent);
  const double B = static_cast<double>(batch), n = static_cast<double>(context);
  const double w = static_cast<double>(dt.weight), N = static_cast<double>(gpus);
  const double H = static_cast<double>(c.kda_num_heads), K = static_cast<double>(c.kda_head_dim);
  const double hk = H * K;

  Work kda;
  const double kda_matmul = split(N, p.kda_matmul, p.kda_shared);
  kda.weight_bytes = w * (kda_matmul + split(N, p.kda_other, p.input_norm));
  kda.cache_bytes = B * 2.0 * (s.kda_state_per_layer + s.kda_conv_per_layer) / N;
  kda.gemm_flops = B * 2.0 * kda_matmul;
  kda.recur_flops = B * (H * 7.0 * K * K + 2.0 * c.short_conv_kernel_size * 3.0 * hk) / N;

  // Absorbed MLA: the new token's latent is written, then all context + 1 latents are read.
  Work mla;
  const double per_token = static_cast<double>(s.mla_per_token_per_layer);
  const double r = static_cast<double>(c.kv_lora_rank);
  const double mla_matmul = split(N, p.mla_matmul, p.mla_shared);
  mla.weight_bytes = w * (mla_matmul + p.mla_other);
  mla.cache_bytes = B * ((n + 1.0) * per_token + per_token);
  mla.gemm_flops = B * 2.0 * mla_matmul;
  mla.attn_flops = B * c.num_attention_heads * 2.0 * (n + 1.0) * (r + c.qk_rope_head_dim + r) / N;

  Work moe;
  const double k_shared = (c.num_experts_per_token + c.num_shared_experts) / N;
  moe.weight_bytes = w * (p.router + p.router_bias + p.ffn_norm +
                          (c.num_shared_experts + experts_touched(c, batch)) / N * p.expert);
  moe.gemm_flops = B * 2.0 * (p.router + k_shared * p.expert);

  Work dense;
  dense.weight_bytes = w * (p.dense_ffn / N + p.ffn_norm);
  dense.gemm_flops = B * 2.0 * p.dense_ffn / N;

  Work head;
  head.weight_bytes = w * (p.head / N + p.final_norm);
  head.other_bytes = B * (c.hidden_size * w + c.vocab_size * static_cast<double>(dt.logits) / N);
  head.gemm_flops = B * 2.0 * p.head / N;

  return assemble(layer_counts(c), kda, mla, moe, dense, head);
}

double resident_weight_bytes(const KimiLinearConfig& c, const Dtypes& dt, int gpus) {
  const LayerParams p = layer_params(c);
  const Counts n = layer_counts(c);
  const double N = static_cast<double>(gpus);
  const double kda = split(N, p.kda_matmul, p.kda_shared) + split(N, p.kda_other, p.input_norm);
  const double mla = split(N, p.mla_matmul, p.mla_shared) + p.mla_other;
  const double moe =
      p.router + p.router_bias + p.ffn_norm + (c.num_shared_experts + c.num_experts) / N * p.expert;
  const double dense = p.dense_ffn / N + p.ffn_norm;
  // The embedding table stays whole on every GPU (a row per token is read); an untied LM head
  // splits by vocabulary. A tied head is the table itself.
  const double table = static_cast<double>(c.vocab_size * c.hidden_size);
  const double head = (c.tie_word_embeddings ? 0.0 : table / N) + p.final_norm;
  const double params = n.kda * kda + n.mla * mla + n.moe * moe + n.dense * dense + table + head;
  return params * static_cast<double>(dt.weight);
}

std::vector<LayerCost> prefill_chunk(const KimiLinearConfig& c, int64_t prefix, int64_t chunk,
                                     bool last, const Dtypes& dt) {
  const LayerParams p = layer_params(c);
  const models::CacheSizes s = models::cache_sizes(c, dt.state, dt.latent);
  const double T = static_cast<double>(chunk), P = static_cast<double>(prefix);
  const double w = static_cast<double>(dt.weight);
  const double H = static_cast<double>(c.kda_num_heads), K = static_cast<double>(c.kda_head_dim);
  const double C = static_cast<double>(kChunk);

  Work kda;
  kda.weight_bytes = w * (p.kda_matmul + p.kda_other);
  kda.cache_bytes = 2.0 * (s.kda_state_per_layer + s.kda_conv_per_layer);
  kda.gemm_flops = T * 2.0 * p.kda_matmul;
  kda.recur_flops =
      T * (H * (6.0 * K * K + 3.0 * C * K + C * C) + 2.0 * c.short_conv_kernel_size * 3.0 * H * K);

  Work mla;
  const double per_token = static_cast<double>(s.mla_per_token_per_layer);
  const double Hm = static_cast<double>(c.num_attention_heads);
  const double nope_v = static_cast<double>(c.qk_nope_head_dim + c.v_head_dim);
  const double dqk = static_cast<double>(c.qk_nope_head_dim + c.qk_rope_head_dim);
  mla.weight_bytes = w * (p.mla_matmul + p.mla_other);
  mla.cache_bytes = P * per_token + T * per_token;
  mla.gemm_flops = T * 2.0 * p.mla_matmul + P * 2.0 * c.kv_lora_rank * Hm * nope_v;
  mla.attn_flops = Hm * 2.0 * (dqk + c.v_head_dim) * (T * P + T * (T + 1.0) / 2.0);

  Work moe;
  const double k_shared = static_cast<double>(c.num_experts_per_token + c.num_shared_experts);
  moe.weight_bytes = w * (p.router + p.router_bias + p.ffn_norm +
                          (c.num_shared_experts + experts_touched(c, chunk)) * p.expert);
  moe.gemm_flops = T * 2.0 * (p.router + k_shared * p.expert);

  Work dense;
  dense.weight_bytes = w * (p.dense_ffn + p.ffn_norm);
  dense.gemm_flops = T * 2.0 * p.dense_ffn;

  Work head;
  head.other_bytes = T * c.hidden_size * w;
  if (last) {
    head.weight_bytes = w * (p.head + p.final_norm);
    head.other_bytes += c.vocab_size * static_cast<double>(dt.logits);
    head.gemm_flops = 2.0 * p.head;
  }
  return assemble(layer_counts(c), kda, mla, moe, dense, head);
}

}  // namespace kimi::inference
