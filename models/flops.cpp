// Parameter, state and FLOP counts from the model config (models/flops.h). Each mixer's count
// follows its constructor in models/<kind>_layer.cpp, term by term.
#include "models/flops.h"

#include <algorithm>
#include <cmath>

#include "core/tensor/error.h"

namespace kimi::models {
namespace {

double linear_flops(int64_t in, int64_t out) { return 2.0 * static_cast<double>(in * out); }

int64_t value_dim(const ModelConfig& m) {
  return static_cast<int64_t>(std::llround(m.expand_v * static_cast<double>(m.head_dim)));
}

// Chunkwise delta rule (WY + UT, docs/math.md), per head and token, chunk C, key dim K, value
// dim V: A = beta K K^T strictly lower (C K), T = (I + A)^-1 by forward substitution (2 C^2 / 3),
// W = T K and U = T V (C K + C V, triangular), V' = U - W S (2 K V), O = q S (2 K V) plus the
// causal intra-chunk part Aqk (C K) and Aqk V' (C V), the state update K^T V' (2 K V).
double delta_core_flops(int64_t C, int64_t K, int64_t V) {
  const double c = static_cast<double>(C), k = static_cast<double>(K), v = static_cast<double>(V);
  return 6 * k * v + 3 * c * k + 2 * c * v + 2 * c * c / 3;
}

// KDA, GDN and DeltaNet share q, k, v, their short convs and the delta-rule core.
MixerCost delta_front(const ModelConfig& m, int64_t seq_len, const char* kind) {
  const int64_t d = m.d_model, H = m.num_heads, K = m.head_dim, V = value_dim(m);
  const int64_t W = m.conv_size, C = std::min(m.chunk_size, seq_len);
  MixerCost c;
  c.kind = kind;
  c.params = d * H * K * 2 + d * H * V + V /*o_norm, shared by the heads*/ + H * V * d;
  c.fwd_flops_per_token = 2 * linear_flops(d, H * K) + linear_flops(d, H * V) +
                          linear_flops(H * V, d) + H * delta_core_flops(C, K, V);
  if (m.short_conv) {
    const int64_t channels = 2 * H * K + H * V;
    c.params += channels * W;
    c.conv_state_elems = channels * (W - 1);
    c.fwd_flops_per_token += 2.0 * static_cast<double>(channels * W);
  }
  c.state_elems = H * K * V;
  return c;
}

std::string output_gate(const ModelConfig& m, const std::string& kind) {
  return m.output_gate != "auto" ? m.output_gate : (kind == "gdn" ? "swish" : "sigmoid");
}

}  // namespace

int64_t mlp_hidden_size(const ModelConfig& m) {
  if (m.mlp_hidden > 0) return m.mlp_hidden;
  const int64_t h = (8 * m.d_model + 2) / 3;  // models/language_model.cpp's rule
  return (h + 31) / 32 * 32;
}

MixerCost kda_cost(const ModelConfig& m, int64_t seq_len) {
  MixerCost c = delta_front(m, seq_len, "kda");
  const int64_t d = m.d_model, H = m.num_heads, K = m.head_dim, V = value_dim(m);
  // f_proj: low rank d -> V -> H K; b_proj d -> H; A_log [H]; dt_bias [H K].
  c.params += d * V + V * H * K + d * H + H + H * K;
  c.fwd_flops_per_token += linear_flops(d, V) + linear_flops(V, H * K) + linear_flops(d, H);
  if (output_gate(m, "kda") != "none") {  // g_proj: low rank d -> V -> H V, bias on the second
    c.params += d * V + V * H * V + H * V;
    c.fwd_flops_per_token += linear_flops(d, V) + linear_flops(V, H * V);
  }
  return c;
}

MixerCost gdn_cost(const ModelConfig& m, int64_t seq_len) {
  MixerCost c = delta_front(m, seq_len, "gdn");
  const int64_t d = m.d_model, H = m.num_heads, V = value_dim(m);
  // a_proj and b_proj d -> H; A_log and dt_bias [H].
  c.params += 2 * d * H + 2 * H;
  c.fwd_flops_per_token += 2 * linear_flops(d, H);
  if (output_gate(m, "gdn") != "none") {  // g_proj: full rank d -> H V
    c.params += d * H * V;
    c.fwd_flops_per_token += linear_flops(d, H * V);
  }
  return c;
}

MixerCost deltanet_cost(const ModelConfig& m, int64_t seq_len) {
  MixerCost c = delta_front(m, seq_len, "deltanet");
  c.params += m.d_model * m.num_heads;  // b_proj
  c.fwd_flops_per_token += linear_flops(m.d_model, m.num_heads);
  return c;
}

MixerCost mamba2_cost(const ModelConfig& m, int64_t seq_len) {
  // models/mamba2_layer.cpp: P = head_dim, N = d_state, one group, H = expand d / P heads.
  const int64_t d = m.d_model, P = m.head_dim, N = m.mamba2.d_state, G = 1;
  const int64_t d_inner = m.mamba2.expand * d, H = d_inner / P, W = m.conv_size;
  const int64_t conv_dim = d_inner + 2 * G * N, C = std::min(m.chunk_size, seq_len);
  MixerCost c;
  c.kind = "mamba2";
  // in_proj d -> [z, xBC, dt]; conv1d with bias; dt_bias, A_log, D [H]; norm; out_proj.
  c.params = d * (d_inner + conv_dim + H) + conv_dim * W + conv_dim + 3 * H + d_inner + d_inner * d;
  // SSD chunk form per head and token (state N x P, no UT transform): intra-chunk scores C N and
  // their product with x C P, the inter-chunk output C^T S (2 N P) and state update (2 N P).
  const double n = static_cast<double>(N), p = static_cast<double>(P), cc = static_cast<double>(C);
  c.fwd_flops_per_token = linear_flops(d, d_inner + conv_dim + H) +
                          2.0 * static_cast<double>(conv_dim * W) + linear_flops(d_inner, d) +
                          static_cast<double>(H) * (4 * n * p + cc * n + cc * p);
  c.state_elems = H * N * P;
  c.conv_state_elems = conv_dim * (W - 1);
  return c;
}

MixerCost attention_cost(const ModelConfig& m, int64_t seq_len) {
  const int64_t d = m.d_model, H = m.num_heads, D = m.head_dim;
  const int64_t Hkv = m.num_kv_heads > 0 ? m.num_kv_heads : H;
  MixerCost c;
  c.kind = "attention";
  c.grows_with_length = true;
  c.params = d * H * D + 2 * d * Hkv * D + H * D * d;
  // Causal: token t attends to t + 1 keys, (T + 1) / 2 on average, for q k^T and for p v.
  const double keys = static_cast<double>(seq_len + 1) / 2;
  c.fwd_flops_per_token = linear_flops(d, H * D) + 2 * linear_flops(d, Hkv * D) +
                          linear_flops(H * D, d) +
                          static_cast<double>(H) * 2 * keys * 2 * static_cast<double>(D);
  c.state_elems = 2 * seq_len * Hkv * D;  // the KV cache after seq_len tokens
  return c;
}

MixerCost mla_cost(const ModelConfig& m, int64_t seq_len) {
  // models/mla_layer.cpp: qk = nope (head_dim) + rope, v head dim = head_dim, latent rank r.
  const int64_t d = m.d_model, H = m.num_heads, nope = m.head_dim, rope = m.qk_rope_dim;
  const int64_t vd = m.head_dim, r = m.kv_lora_rank, qr = m.q_lora_rank, qk = nope + rope;
  MixerCost c;
  c.kind = "mla";
  c.grows_with_length = true;
  double flops = 0;
  if (qr == 0) {
    c.params = d * H * qk;
    flops += linear_flops(d, H * qk);
  } else {
    c.params = d * qr + qr + qr * H * qk;
    flops += linear_flops(d, qr) + linear_flops(qr, H * qk);
  }
  c.params += d * (r + rope) + r + r * H * (nope + vd) + H * vd * d;
  flops += linear_flops(d, r + rope) + linear_flops(r, H * (nope + vd)) + linear_flops(H * vd, d);
  const double keys = static_cast<double>(seq_len + 1) / 2;  // trained in the expanded form
  flops += static_cast<double>(H) * 2 * keys * static_cast<double>(qk + vd);
  c.fwd_flops_per_token = flops;
  c.state_elems = seq_len * (r + rope);  // the latent cache after seq_len tokens
  return c;
}

MixerCost mixer_cost(const ModelConfig& m, const std::string& kind, int64_t seq_len) {
  if (kind == "kda") return kda_cost(m, seq_len);
  if (kind == "gdn") return gdn_cost(m, seq_len);
  if (kind == "deltanet") return deltanet_cost(m, seq_len);
  if (kind == "mamba2") return mamba2_cost(m, seq_len);
  if (kind == "attention") return attention_cost(m, seq_len);
  if (kind == "mla") return mla_cost(m, seq_len);
  throw UserError(fmt::format("no parameter/FLOP count for mixer '{}' (models/flops.cpp)", kind));
}

ModelCost model_cost(const ModelConfig& m, int64_t vocab_size, int64_t seq_len) {
  ModelCost out;
  const int64_t d = m.d_model;
  out.embedding_params = vocab_size * d;
  out.params = out.embedding_params + d /*final norm*/;
  if (!m.tie_embeddings) out.params += d * vocab_size;
  out.fwd_flops_per_token = linear_flops(d, vocab_size);  // the LM head, tied or not
  for (const auto& kind : layer_mixers(m)) {
    MixerCost c = mixer_cost(m, kind, seq_len);
    out.params += c.params + d /*mixer_norm*/;
    out.fwd_flops_per_token += c.fwd_flops_per_token;
    if (m.mlp) {
      const int64_t h = mlp_hidden_size(m);
      out.params += d /*mlp_norm*/ + 3 * d * h;
      out.fwd_flops_per_token += 3 * linear_flops(d, h);
    }
    out.layers.push_back(std::move(c));
  }
  out.train_flops_per_token = 3 * out.fwd_flops_per_token;
  return out;
}

}  // namespace kimi::models
