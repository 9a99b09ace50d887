// The weight arena's layout (weight_layout.h): names and shapes as models/kimi_linear.cpp
// registers them (HF names; KDA's f_a/f_b/g_a/g_b as in the checkpoint).
#include "inference/engine/weight_layout.h"

#include <cmath>

#include "core/tensor/error.h"

namespace kimi::inference::engine {

int64_t WeightEntry::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t WeightEntry::bytes() const { return numel() * (dtype == WDType::kF32 ? 4 : 2); }

const WeightEntry* WeightLayout::find(const std::string& name) const {
  for (const WeightEntry& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

namespace {

class Builder {
 public:
  explicit Builder(WeightLayout& l) : l_(l) {}
  // Appends a tensor; returns its offset.
  int64_t add(const std::string& name, std::vector<int64_t> shape,
              InitKind init = InitKind::kNormal, double a = 0.02, double b = 0,
              WDType dt = WDType::kBF16) {
    WeightEntry e;
    e.name = name, e.shape = std::move(shape), e.dtype = dt, e.init = init, e.a = a, e.b = b;
    e.offset = (l_.total_bytes + 255) / 256 * 256;
    l_.total_bytes = e.offset + e.bytes();
    l_.entries.push_back(e);
    return e.offset;
  }
  // Appends tensors that must be one matrix (no padding between): rows x cols each.
  // align = false continues the previous matrix without padding (an expert's w2 after w1, w3).
  int64_t add_rows(const std::vector<std::pair<std::string, int64_t>>& parts, int64_t cols,
                   bool align = true) {
    const int64_t start = align ? (l_.total_bytes + 255) / 256 * 256 : l_.total_bytes;
    int64_t at = start;
    for (const auto& [name, rows] : parts) {
      WeightEntry e;
      e.name = name, e.shape = {rows, cols}, e.offset = at;
      at += e.bytes();
      l_.entries.push_back(e);
    }
    l_.total_bytes = at;
    return start;
  }
  int64_t ones(const std::string& name, int64_t n) {
    return add(name, {n}, InitKind::kConstant, 1.0);
  }

 private:
  WeightLayout& l_;
};

void check_supported(const models::KimiLinearConfig& c) {
  auto refuse = [](const std::string& what) {
    throw UserError("decode engine: " + what + " is not supported");
  };
  if (c.q_lora_rank > 0) refuse("MLA with q_lora_rank > 0 (a low-rank query)");
  if (c.moe_router_activation_func != "sigmoid")
    refuse("moe_router_activation_func '" + c.moe_router_activation_func + "' (only sigmoid)");
  if (c.num_expert_group > 1) refuse("grouped routing (num_expert_group > 1)");
  if (c.tie_word_embeddings) refuse("tie_word_embeddings");
  if (c.num_experts > 1024) refuse("more than 1024 experts");
  if (c.kda_head_dim > 128 || c.kv_lora_rank + c.qk_rope_head_dim > 2048)
    refuse("KDA head_dim > 128 or MLA kv_lora_rank + qk_rope_head_dim > 2048");
}

}  // namespace

WeightLayout make_weight_layout(const models::KimiLinearConfig& c) {
  check_supported(c);
  WeightLayout l;
  l.config = c;
  Builder b(l);
  const int64_t d = c.hidden_size;
  l.embed = b.add("model.embed_tokens.weight", {c.vocab_size, d});
  const int64_t H = c.kda_num_heads, K = c.kda_head_dim, HK = H * K, W = c.short_conv_kernel_size;
  const int64_t Hm = c.num_attention_heads, qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  const int64_t rank = c.kv_lora_rank, rope = c.qk_rope_head_dim;
  l.kda_rows = 3 * HK + 2 * K + H;
  l.mla_rows = Hm * qk + rank + rope;
  l.mlp_hidden = c.intermediate_size;
  l.shared_hidden = c.moe_intermediate_size * c.num_shared_experts;
  const double conv_bound = 1.0 / std::sqrt(static_cast<double>(W));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const std::string a = p + "self_attn.";
    LayerOffsets o;
    o.is_mla = c.is_mla(i), o.is_moe = c.is_moe(i);
    o.input_norm = b.ones(p + "input_layernorm.weight", d);
    if (!o.is_mla) {
      o.kda_in = b.add_rows({{a + "q_proj.weight", HK},
                             {a + "k_proj.weight", HK},
                             {a + "v_proj.weight", HK},
                             {a + "f_a_proj.weight", K},
                             {a + "g_a_proj.weight", K},
                             {a + "b_proj.weight", H}},
                            d);
      o.q_conv =
          b.add(a + "q_conv1d.weight", {HK, 1, W}, InitKind::kUniform, -conv_bound, conv_bound);
      o.k_conv =
          b.add(a + "k_conv1d.weight", {HK, 1, W}, InitKind::kUniform, -conv_bound, conv_bound);
      o.v_conv =
          b.add(a + "v_conv1d.weight", {HK, 1, W}, InitKind::kUniform, -conv_bound, conv_bound);
      o.f_b = b.add(a + "f_b_proj.weight", {HK, K});
      o.g_b = b.add(a + "g_b_proj.weight", {HK, K});
      o.g_b_bias = b.add(a + "g_b_proj.bias", {HK}, InitKind::kConstant, 0.0);
      l.entries.back().optional = true;  // HF's g_b_proj has no bias
      o.a_log = b.add(a + "A_log", {H}, InitKind::kALog, 0, 0, WDType::kF32);
      o.dt_bias = b.add(a + "dt_bias", {HK}, InitKind::kDtBias, 0, 0, WDType::kF32);
      o.o_norm = b.ones(a + "o_norm.weight", K);
      o.o_proj = b.add(a + "o_proj.weight", {d, HK});
    } else {
      o.mla_in = b.add_rows(
          {{a + "q_proj.weight", Hm * qk}, {a + "kv_a_proj_with_mqa.weight", rank + rope}}, d);
      o.kv_norm = b.ones(a + "kv_a_layernorm.weight", rank);
      o.kv_b = b.add(a + "kv_b_proj.weight", {Hm * (c.qk_nope_head_dim + c.v_head_dim), rank});
      o.o_proj = b.add(a + "o_proj.weight", {d, Hm * c.v_head_dim});
    }
    o.post_norm = b.ones(p + "post_attention_layernorm.weight", d);
    const int64_t h = c.moe_intermediate_size;
    if (o.is_moe) {
      const std::string m = p + "block_sparse_moe.";
      o.router =
          b.add(m + "gate.weight", {c.num_experts, d}, InitKind::kNormal, 0.02, 0, WDType::kF32);
      o.router_bias = b.add(m + "gate.e_score_correction_bias", {c.num_experts},
                            InitKind::kConstant, 0.0, 0, WDType::kF32);
      for (int64_t e = 0; e < c.num_experts; ++e) {
        const std::string x = m + "experts." + std::to_string(e) + ".";
        const int64_t at = b.add_rows({{x + "w1.weight", h}, {x + "w3.weight", h}}, d);
        b.add_rows({{x + "w2.weight", d}}, h, false);  // w2 right after w3: one block
        if (e == 0) o.experts = at;
        if (e == 1) o.expert_stride = at - o.experts;
      }
      if (c.num_experts == 1) o.expert_stride = 3 * h * d * 2;
      if (c.num_shared_experts > 0) {
        const int64_t hs = l.shared_hidden;
        o.mlp_gate_up = b.add_rows({{m + "shared_experts.gate_proj.weight", hs},
                                    {m + "shared_experts.up_proj.weight", hs}},
                                   d);
        o.mlp_down = b.add(m + "shared_experts.down_proj.weight", {d, hs});
      }
    } else {
      o.mlp_gate_up = b.add_rows({{p + "mlp.gate_proj.weight", c.intermediate_size},
                                  {p + "mlp.up_proj.weight", c.intermediate_size}},
                                 d);
      o.mlp_down = b.add(p + "mlp.down_proj.weight", {d, c.intermediate_size});
    }
    l.layers.push_back(o);
  }
  l.final_norm = b.ones("model.norm.weight", d);
  l.lm_head = b.add("lm_head.weight", {c.vocab_size, d});
  l.total_bytes = (l.total_bytes + 255) / 256 * 256;
  return l;
}

int64_t active_weight_bytes(const WeightLayout& l, int64_t distinct_experts_all_layers,
                            int64_t batch) {
  const models::KimiLinearConfig& c = l.config;
  int64_t bytes = 0;
  for (const WeightEntry& e : l.entries) {
    if (e.name.find(".experts.") != std::string::npos) continue;
    if (e.name == "model.embed_tokens.weight") continue;
    bytes += e.bytes();
  }
  const int64_t expert_bytes = 3 * c.moe_intermediate_size * c.hidden_size * 2;
  return bytes + distinct_experts_all_layers * expert_bytes + batch * c.hidden_size * 2;
}

}  // namespace kimi::inference::engine
