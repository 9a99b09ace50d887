// ModelConfig's per-layer mixer list (docs/models.md#model: list or ratio, the global layer last
// in a group) and its one conversion to MixerOptions.
#include "models/model_config.h"

#include <fmt/ranges.h>

#include <algorithm>

#include "core/tensor/error.h"
#include "models/mixer.h"

namespace kimi {
namespace {

// The mixer registry (models/mixer_registry.cpp) is the one list of mixer names.
void check_mixer(const char* key, const std::string& name) {
  const std::vector<std::string> names = models::mixer_kinds();
  if (std::find(names.begin(), names.end(), name) != names.end()) return;
  throw UserError(
      fmt::format("{}: unknown mixer '{}'; expected one of {}", key, name, fmt::join(names, ", ")));
}

std::vector<std::string> split_trimmed(const std::string& text, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(sep, start);
    std::string part = text.substr(start, end == std::string::npos ? end : end - start);
    part.erase(0, part.find_first_not_of(" \t"));
    part.erase(part.find_last_not_of(" \t") + 1);
    parts.push_back(part);
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

int64_t parse_count(const std::string& text, const std::string& spec) {
  size_t used = 0;
  int64_t value = -1;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
  }
  if (used != text.size() || value < 0) {
    throw UserError(fmt::format("model.hybrid: bad ratio count '{}' in '{}'", text, spec));
  }
  return value;
}

// "a:b=x:y": groups of x a-layers then y b-layers; a short last group ends with its b's, as
// Kimi-Linear-48B's 27 layers end with MLA (0-based MLA layers 3, 7, ..., 23, 26).
std::vector<std::string> hybrid_layers(const std::string& spec, int64_t n_layers) {
  const auto sides = split_trimmed(spec, '=');
  const auto names = split_trimmed(sides[0], ':');
  const auto counts = sides.size() == 2 ? split_trimmed(sides[1], ':') : std::vector<std::string>{};
  if (names.size() != 2 || counts.size() != 2) {
    throw UserError(
        fmt::format("model.hybrid: expected 'a:b=x:y' (e.g. kda:attention=3:1); "
                    "got '{}'",
                    spec));
  }
  check_mixer("model.hybrid", names[0]);
  check_mixer("model.hybrid", names[1]);
  const int64_t x = parse_count(counts[0], spec), y = parse_count(counts[1], spec);
  if (x + y == 0) throw UserError(fmt::format("model.hybrid: ratio 0:0 in '{}'", spec));
  std::vector<std::string> layers;
  for (int64_t i = 0; i < n_layers; ++i) {
    const int64_t group_start = i - i % (x + y);
    const int64_t group_len = std::min(x + y, n_layers - group_start);
    const bool global = i - group_start >= group_len - std::min(y, group_len);
    layers.push_back(global ? names[1] : names[0]);
  }
  return layers;
}

}  // namespace

std::vector<std::string> layer_mixers(const ModelConfig& m) {
  if (!m.hybrid.empty()) {
    if (m.mixer.size() > 1) {
      throw UserError("model.hybrid and a model.mixer list are both set; keep one of them");
    }
    return hybrid_layers(m.hybrid, m.n_layers);
  }
  if (m.mixer.empty()) throw UserError("model.mixer is empty; name a mixer, e.g. kda");
  for (const auto& name : m.mixer) check_mixer("model.mixer", name);
  if (m.mixer.size() == 1) return std::vector<std::string>(m.n_layers, m.mixer[0]);
  if (static_cast<int64_t>(m.mixer.size()) != m.n_layers) {
    throw UserError(fmt::format("model.mixer lists {} mixers but model.n_layers is {}",
                                m.mixer.size(), m.n_layers));
  }
  return m.mixer;
}

void validate_moe(const ModelConfig& m) {
  const MoeConfig& e = m.moe;
  auto need = [](bool ok, const char* key, const char* rule, auto value) {
    if (!ok) throw UserError(fmt::format("{} must be {} (got {})", key, rule, value));
  };
  need(e.num_experts >= 0, "model.moe.num_experts", ">= 0 (0 = no MoE)", e.num_experts);
  if (e.num_experts == 0) return;
  need(e.top_k >= 1 && e.top_k <= e.num_experts, "model.moe.top_k", "in [1, model.moe.num_experts]",
       e.top_k);
  need(e.expert_hidden >= 0, "model.moe.expert_hidden", ">= 0 (0 = the dense MLP's)",
       e.expert_hidden);
  need(e.num_shared >= 0, "model.moe.num_shared", ">= 0", e.num_shared);
  need(e.first_dense >= 0 && e.first_dense < m.n_layers, "model.moe.first_dense",
       "in [0, model.n_layers)", e.first_dense);
  need(e.routed_scaling_factor > 0, "model.moe.routed_scaling_factor", "> 0",
       e.routed_scaling_factor);
  need(e.bias_update_rate >= 0, "model.moe.bias_update_rate", ">= 0", e.bias_update_rate);
  need(e.aux_loss_coef >= 0, "model.moe.aux_loss_coef", ">= 0", e.aux_loss_coef);
}

namespace models {

MixerOptions mixer_options(const ModelConfig& cfg, const std::string& kind) {
  MixerOptions o;
  o.kind = kind;
  o.d_model = cfg.d_model;
  o.num_heads = cfg.num_heads;
  o.head_dim = cfg.head_dim;
  o.num_kv_heads = cfg.num_kv_heads;
  o.expand_v = cfg.expand_v;
  o.short_conv = cfg.short_conv;
  o.conv_size = cfg.conv_size;
  // "auto" keeps each layer's FLA default: sigmoid for KDA (the paper), swish for GDN.
  o.output_gate =
      cfg.output_gate != "auto" ? cfg.output_gate : (kind == "gdn" ? "swish" : "sigmoid");
  o.rope = cfg.rope;
  o.rope_theta = cfg.rope_theta;
  o.chunk_size = cfg.chunk_size;
  o.kv_lora_rank = cfg.kv_lora_rank;
  o.q_lora_rank = cfg.q_lora_rank;
  o.qk_rope_dim = cfg.qk_rope_dim;
  o.d_state = cfg.mamba2.d_state;
  o.expand = cfg.mamba2.expand;
  o.norm_eps = cfg.norm_eps;
  o.init_std = cfg.init_std;
  o.dt_min = cfg.dt_min;
  o.dt_max = cfg.dt_max;
  return o;
}

}  // namespace models
}  // namespace kimi
