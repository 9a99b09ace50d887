// Kimi-Linear config: config.json parsing (nlohmann_json), the 48B preset, and sizes counted
// from the config (HF modeling_kimi.py's module shapes; docs/models.md#kimi-linear-48b for the
// figures).
#include "models/kimi_linear_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/tensor/error.h"

namespace kimi::models {
namespace {

using nlohmann::json;

struct Reader {
  const json& j;
  std::string where;

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw UserError(fmt::format("{}: key '{}': {}", where, key, why));
  }
  int64_t integer(const std::string& key, std::optional<int64_t> dflt = {}) const {
    if (!j.contains(key) || j[key].is_null()) {
      if (!dflt) fail(key, "missing");
      return *dflt;
    }
    if (!j[key].is_number_integer()) fail(key, "expected an integer, got " + j[key].dump());
    return j[key].get<int64_t>();
  }
  double real(const std::string& key, double dflt) const {
    if (!j.contains(key) || j[key].is_null()) return dflt;
    if (!j[key].is_number()) fail(key, "expected a number, got " + j[key].dump());
    return j[key].get<double>();
  }
  bool boolean(const std::string& key, bool dflt) const {
    if (!j.contains(key) || j[key].is_null()) return dflt;
    if (!j[key].is_boolean()) fail(key, "expected true or false, got " + j[key].dump());
    return j[key].get<bool>();
  }
  std::vector<int64_t> list(const std::string& key) const {
    if (!j.contains(key) || !j[key].is_array()) fail(key, "expected a list of layer numbers");
    std::vector<int64_t> out;
    for (const json& v : j[key]) {
      if (!v.is_number_integer()) fail(key, "expected integers, got " + v.dump());
      out.push_back(v.get<int64_t>());
    }
    return out;
  }
};

// Every layer is in exactly one of the 1-based lists.
void check_layer_lists(const KimiLinearConfig& c, const std::string& where) {
  for (int64_t i = 1; i <= c.num_hidden_layers; ++i) {
    auto in = [i](const std::vector<int64_t>& v) { return std::count(v.begin(), v.end(), i); };
    if (in(c.kda_layers) + in(c.full_attn_layers) != 1)
      throw UserError(fmt::format(
          "{}: layer {} (1-based) must be in exactly one of linear_attn_config.kda_layers and "
          "full_attn_layers",
          where, i));
  }
  if (static_cast<int64_t>(c.kda_layers.size() + c.full_attn_layers.size()) != c.num_hidden_layers)
    throw UserError(fmt::format("{}: kda_layers and full_attn_layers hold {} entries for {} layers",
                                where, c.kda_layers.size() + c.full_attn_layers.size(),
                                c.num_hidden_layers));
}

void check_sizes(const KimiLinearConfig& c, const std::string& where) {
  auto positive = [&](int64_t v, const char* key) {
    if (v <= 0)
      throw UserError(fmt::format("{}: key '{}' must be positive, got {}", where, key, v));
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.num_hidden_layers, "num_hidden_layers");
  positive(c.kda_head_dim, "linear_attn_config.head_dim");
  positive(c.kda_num_heads, "linear_attn_config.num_heads");
  if (!c.full_attn_layers.empty()) {
    positive(c.num_attention_heads, "num_attention_heads");
    positive(c.kv_lora_rank, "kv_lora_rank");
    positive(c.qk_nope_head_dim, "qk_nope_head_dim");
    positive(c.v_head_dim, "v_head_dim");
  }
  if (c.num_experts > 0) {
    positive(c.num_experts_per_token, "num_experts_per_token");
    positive(c.moe_intermediate_size, "moe_intermediate_size");
    positive(c.moe_layer_freq, "moe_layer_freq");
    if (c.num_experts_per_token > c.num_experts || c.num_experts % c.num_expert_group != 0 ||
        c.topk_group > c.num_expert_group)
      throw UserError(fmt::format(
          "{}: bad expert routing sizes (experts {}, top-k {}, groups {}, "
          "topk_group {})",
          where, c.num_experts, c.num_experts_per_token, c.num_expert_group, c.topk_group));
    if (c.moe_router_activation_func != "sigmoid")
      throw UserError(fmt::format("{}: moe_router_activation_func '{}' is not supported (sigmoid)",
                                  where, c.moe_router_activation_func));
  }
  if (!c.mla_use_nope)
    throw UserError(where +
                    ": mla_use_nope false (MLA with RoPE) is not supported; Kimi Linear's "
                    "MLA layers are NoPE");
}

}  // namespace

bool KimiLinearConfig::is_mla(int64_t layer) const {
  return std::count(full_attn_layers.begin(), full_attn_layers.end(), layer + 1) > 0;
}

// HF KimiDecoderLayer: MoE when num_experts is set, layer >= first_k_dense_replace and
// layer % moe_layer_freq == 0; the dense MLP otherwise.
bool KimiLinearConfig::is_moe(int64_t layer) const {
  return num_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
}

KimiLinearConfig parse_kimi_linear_config(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw UserError(fmt::format("{}: not valid JSON ({})", where, e.what()));
  }
  if (!j.is_object()) throw UserError(where + ": expected a JSON object");
  Reader r{j, where};
  KimiLinearConfig c;
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.num_hidden_layers = r.integer("num_hidden_layers");
  c.num_attention_heads = r.integer("num_attention_heads");
  c.head_dim = r.integer("head_dim", 0);
  c.intermediate_size = r.integer("intermediate_size");
  c.rms_norm_eps = r.real("rms_norm_eps", 1e-5);
  c.kv_lora_rank = r.integer("kv_lora_rank", 0);
  c.q_lora_rank = r.integer("q_lora_rank", 0);
  c.qk_nope_head_dim = r.integer("qk_nope_head_dim", 0);
  c.qk_rope_head_dim = r.integer("qk_rope_head_dim", 0);
  c.v_head_dim = r.integer("v_head_dim", 0);
  c.mla_use_nope = r.boolean("mla_use_nope", false);
  if (!j.contains("linear_attn_config") || !j["linear_attn_config"].is_object())
    throw UserError(where + ": key 'linear_attn_config': missing (expected an object)");
  Reader la{j["linear_attn_config"], where + " linear_attn_config"};
  c.kda_head_dim = la.integer("head_dim");
  c.kda_num_heads = la.integer("num_heads");
  c.short_conv_kernel_size = la.integer("short_conv_kernel_size", 4);
  c.kda_layers = la.list("kda_layers");
  c.full_attn_layers = la.list("full_attn_layers");
  c.num_experts = r.integer("num_experts", 0);
  c.num_experts_per_token = r.integer("num_experts_per_token", 0);
  c.num_shared_experts = r.integer("num_shared_experts", 0);
  c.moe_intermediate_size = r.integer("moe_intermediate_size", 0);
  c.first_k_dense_replace = r.integer("first_k_dense_replace", 0);
  c.moe_layer_freq = r.integer("moe_layer_freq", 1);
  c.routed_scaling_factor = r.real("routed_scaling_factor", 1.0);
  c.moe_renormalize = r.boolean("moe_renormalize", true);
  if (j.contains("moe_router_activation_func") && j["moe_router_activation_func"].is_string())
    c.moe_router_activation_func = j["moe_router_activation_func"].get<std::string>();
  c.num_expert_group = r.integer("num_expert_group", 1);
  c.topk_group = r.integer("topk_group", 1);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  check_sizes(c, where);
  check_layer_lists(c, where);
  return c;
}

KimiLinearConfig load_kimi_linear_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UserError(fmt::format("{}: cannot open", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_kimi_linear_config(ss.str(), path);
}

KimiLinearConfig kimi_linear_48b() {
  KimiLinearConfig c;
  c.vocab_size = 163840, c.hidden_size = 2304, c.num_hidden_layers = 27;
  c.num_attention_heads = 32, c.head_dim = 128, c.intermediate_size = 9216;
  c.rms_norm_eps = 1e-5;
  c.kv_lora_rank = 512, c.q_lora_rank = 0;
  c.qk_nope_head_dim = 128, c.qk_rope_head_dim = 64, c.v_head_dim = 128;
  c.mla_use_nope = true;
  c.kda_head_dim = 128, c.kda_num_heads = 32, c.short_conv_kernel_size = 4;
  c.full_attn_layers = {4, 8, 12, 16, 20, 24, 27};
  for (int64_t i = 1; i <= 27; ++i)
    if (!c.is_mla(i - 1)) c.kda_layers.push_back(i);
  c.num_experts = 256, c.num_experts_per_token = 8, c.num_shared_experts = 1;
  c.moe_intermediate_size = 1024, c.first_k_dense_replace = 1, c.moe_layer_freq = 1;
  c.routed_scaling_factor = 2.446, c.moe_renormalize = true;
  c.num_expert_group = 1, c.topk_group = 1;
  c.tie_word_embeddings = false;
  return c;
}

KimiLinearConfig all_mla_twin(const KimiLinearConfig& c) {
  if (c.num_attention_heads <= 0 || c.kv_lora_rank <= 0 || c.qk_nope_head_dim <= 0 ||
      c.v_head_dim <= 0)
    throw UserError(
        "all-MLA twin: the config has no MLA sizes (num_attention_heads, kv_lora_rank, "
        "qk_nope_head_dim, v_head_dim) to give every layer");
  KimiLinearConfig t = c;
  t.kda_layers.clear();
  t.full_attn_layers.clear();
  for (int64_t i = 1; i <= c.num_hidden_layers; ++i) t.full_attn_layers.push_back(i);
  return t;
}

ParameterCount parameter_count(const KimiLinearConfig& c) {
  ParameterCount p;
  const int64_t d = c.hidden_size;
  p.embedding = c.vocab_size * d;
  p.lm_head = c.tie_word_embeddings ? 0 : c.vocab_size * d;
  // KDA: q,k,v,o projections, 3 convs, f_a/f_b, g_a/g_b (no bias), b_proj, A_log, dt_bias, o_norm.
  const int64_t hk = c.kda_num_heads * c.kda_head_dim, kd = c.kda_head_dim;
  const int64_t kda = 4 * d * hk + 3 * hk * c.short_conv_kernel_size + 2 * (d * kd + kd * hk) +
                      d * c.kda_num_heads + c.kda_num_heads + hk + kd;
  // MLA: q (plain or low-rank), kv_a (+ norm), kv_b, o.
  const int64_t H = c.num_attention_heads, qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  const int64_t q =
      c.q_lora_rank > 0 ? d * c.q_lora_rank + c.q_lora_rank + c.q_lora_rank * H * qk : d * H * qk;
  const int64_t mla = q + d * (c.kv_lora_rank + c.qk_rope_head_dim) + c.kv_lora_rank +
                      c.kv_lora_rank * H * (c.qk_nope_head_dim + c.v_head_dim) +
                      H * c.v_head_dim * d;
  const int64_t expert = 3 * d * c.moe_intermediate_size;
  const int64_t moe_fixed = c.num_experts * d + c.num_experts + c.num_shared_experts * expert;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    if (c.is_mla(i))
      p.mla += mla;
    else
      p.kda += kda;
    p.norms += 2 * d;
    if (c.is_moe(i)) {
      p.moe += moe_fixed + c.num_experts * expert;
      p.routed_experts += c.num_experts * expert;
      p.active -= (c.num_experts - c.num_experts_per_token) * expert;
    } else {
      p.dense_mlp += 3 * d * c.intermediate_size;
    }
  }
  p.norms += d;
  p.total = p.embedding + p.lm_head + p.kda + p.mla + p.dense_mlp + p.moe + p.norms;
  p.active += p.total;
  return p;
}

int64_t CacheSizes::hybrid(int64_t tokens) const {
  return num_kda * (kda_state_per_layer + kda_conv_per_layer) +
         num_mla * mla_per_token_per_layer * tokens;
}

int64_t CacheSizes::all_mla(int64_t tokens) const {
  return (num_kda + num_mla) * mla_per_token_per_layer * tokens;
}

CacheSizes cache_sizes(const KimiLinearConfig& c, int64_t state_bytes, int64_t latent_bytes) {
  CacheSizes s;
  const int64_t hk = c.kda_num_heads * c.kda_head_dim;
  s.kda_state_per_layer = hk * c.kda_head_dim * state_bytes;
  s.kda_conv_per_layer = 3 * (c.short_conv_kernel_size - 1) * hk * state_bytes;
  s.mla_per_token_per_layer = (c.kv_lora_rank + c.qk_rope_head_dim) * latent_bytes;
  s.num_mla = static_cast<int64_t>(c.full_attn_layers.size());
  s.num_kda = c.num_hidden_layers - s.num_mla;
  return s;
}

}  // namespace kimi::models
