// Defaults that depend on other keys and value checks with the key named in every message (the
// per-layer mixer list is models/model_config.cpp's layer_mixers).
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "core/tensor/error.h"
#include "trainer/config_fields.h"

namespace kimi {
namespace config_detail {
namespace {

template <class T>
void require(bool ok, const char* key, const char* rule, const T& value) {
  if (!ok) throw UserError(fmt::format("{} must be {} (got {})", key, rule, value));
}

void require_choice(const std::string& key, const std::string& value,
                    const std::vector<std::string>& choices) {
  if (std::find(choices.begin(), choices.end(), value) != choices.end()) return;
  throw UserError(
      fmt::format("{}: expected one of {}; got '{}'", key, fmt::join(choices, ", "), value));
}

void validate_task(const TaskConfig& t) {
  require_choice("task.name", t.name, {"palindrome", "mqar", "stack", "lm"});
  require_choice("task.mqar.form", t.mqar.form, {"kimi", "zoology"});
  require_choice("task.mqar.query_layout", t.mqar.query_layout, {"block", "spread"});
  require_choice("task.mqar.filler", t.mqar.filler, {"pad", "random"});
  require(t.vocab_size >= 0, "task.vocab_size", ">= 0", t.vocab_size);
  require(t.mqar.num_kv_pairs >= 0, "task.mqar.num_kv_pairs", ">= 0", t.mqar.num_kv_pairs);
  require(t.mqar.tokens_per_pair >= 2, "task.mqar.tokens_per_pair", ">= 2", t.mqar.tokens_per_pair);
  require(t.stack.max_depth >= 0, "task.stack.max_depth", ">= 0", t.stack.max_depth);
  require(t.mqar.num_queries >= 0, "task.mqar.num_queries", ">= 0", t.mqar.num_queries);
  require(t.mqar.power_a > 0, "task.mqar.power_a", "> 0", t.mqar.power_a);
  require(t.mqar.query_offset >= 0, "task.mqar.query_offset", ">= 0", t.mqar.query_offset);
  require(t.palindrome.length >= 0, "task.palindrome.length", ">= 0", t.palindrome.length);
  require(t.stack.num_stacks >= 1, "task.stack.num_stacks", ">= 1", t.stack.num_stacks);
  require(t.stack.push_prob > 0 && t.stack.push_prob < 1, "task.stack.push_prob", "in (0, 1)",
          t.stack.push_prob);
  require(t.lm.eval_fraction > 0 && t.lm.eval_fraction < 1, "task.lm.eval_fraction", "in (0, 1)",
          t.lm.eval_fraction);
  if (t.mixed_lengths && t.train_seq_lens.empty()) {
    throw UserError("task.train_seq_lens must list lengths when task.mixed_lengths is true");
  }
  for (int64_t len : t.train_seq_lens) require(len > 0, "task.train_seq_lens", "> 0", len);
}

bool any_layer(const std::vector<std::string>& layers, std::initializer_list<const char*> kinds) {
  return std::any_of(layers.begin(), layers.end(), [&](const std::string& l) {
    return std::any_of(kinds.begin(), kinds.end(), [&](const char* k) { return l == k; });
  });
}

// An ablation key that no layer reads would train the reference model under the ablation's
// name (Table 1's rows differ in nothing else), so a setting no layer can honour is refused.
void check_settings_apply(const ModelConfig& m, const std::vector<std::string>& layers) {
  if (m.output_gate != "auto" && !any_layer(layers, {"kda", "gdn"}))
    throw UserError(fmt::format(
        "model.output_gate={}: no layer has an output gate (only kda and gdn do; layers: {})",
        m.output_gate, fmt::join(layers, ", ")));
  if (m.rope && !any_layer(layers, {"attention", "mla"}))
    throw UserError(
        fmt::format("model.rope=true: no layer uses positions (only attention and mla do; "
                    "layers: {})",
                    fmt::join(layers, ", ")));
  if (!m.short_conv && any_layer(layers, {"mamba2"}))
    throw UserError(
        "model.short_conv=false: mamba2 layers always keep their causal conv (HF Mamba2); "
        "it cannot be turned off there");
  if (!m.short_conv && !any_layer(layers, {"kda", "gdn", "deltanet"}))
    throw UserError(fmt::format(
        "model.short_conv=false: no layer has a short conv to turn off (kda, gdn, deltanet do; "
        "layers: {})",
        fmt::join(layers, ", ")));
  const ModelConfig defaults;
  if ((m.dt_min != defaults.dt_min || m.dt_max != defaults.dt_max) &&
      !any_layer(layers, {"kda", "gdn", "mamba2"}))
    throw UserError(fmt::format(
        "model.dt_min / model.dt_max: no layer has a decay step to initialise (kda, gdn, mamba2 "
        "do; layers: {})",
        fmt::join(layers, ", ")));
}

void validate_model(const ModelConfig& m) {
  require(m.d_model > 0, "model.d_model", "> 0", m.d_model);
  require(m.n_layers > 0, "model.n_layers", "> 0", m.n_layers);
  require(m.num_heads > 0, "model.num_heads", "> 0", m.num_heads);
  require(m.head_dim > 0, "model.head_dim", "> 0", m.head_dim);
  require(m.num_kv_heads > 0 && m.num_heads % m.num_kv_heads == 0, "model.num_kv_heads",
          "a divisor of model.num_heads", m.num_kv_heads);
  require(m.expand_v > 0, "model.expand_v", "> 0", m.expand_v);
  require(m.conv_size >= 1, "model.conv_size", ">= 1", m.conv_size);
  require_choice("model.output_gate", m.output_gate, {"auto", "sigmoid", "swish", "none"});
  require(m.rope_theta > 0, "model.rope_theta", "> 0", m.rope_theta);
  require(m.mlp_hidden >= 0, "model.mlp_hidden", ">= 0", m.mlp_hidden);
  require(m.norm_eps > 0, "model.norm_eps", "> 0", m.norm_eps);
  require(m.chunk_size > 0, "model.chunk_size", "> 0", m.chunk_size);
  require(m.kv_lora_rank > 0, "model.kv_lora_rank", "> 0", m.kv_lora_rank);
  require(m.q_lora_rank >= 0, "model.q_lora_rank", ">= 0", m.q_lora_rank);
  require(m.qk_rope_dim >= 0, "model.qk_rope_dim", ">= 0", m.qk_rope_dim);
  require(m.init_std > 0, "model.init_std", "> 0", m.init_std);
  // 1e-4: the floor of a drawn step (Mamba's dt_init_floor), so no draw is ever changed.
  require(m.dt_min >= 1e-4, "model.dt_min", ">= 1e-4", m.dt_min);
  require(m.dt_max >= m.dt_min, "model.dt_max", ">= model.dt_min", m.dt_max);
  require(m.mamba2.d_state > 0, "model.mamba2.d_state", "> 0", m.mamba2.d_state);
  require(m.mamba2.expand > 0, "model.mamba2.expand", "> 0", m.mamba2.expand);
  const std::vector<std::string> layers = layer_mixers(m);  // throws on bad names, lengths, ratios
  // RoPE rotates pairs of channels; refused here so no run directory is written first.
  if (m.rope && m.head_dim % 2 != 0) {
    throw UserError(
        fmt::format("model.head_dim must be even with model.rope=true (RoPE rotates pairs; got {})",
                    m.head_dim));
  }
  // MLA with rope rotates its decoupled qk_rope_dim slice (NoPE, the paper's, when rope is off).
  if (m.rope && std::find(layers.begin(), layers.end(), "mla") != layers.end())
    require(m.qk_rope_dim > 0 && m.qk_rope_dim % 2 == 0, "model.qk_rope_dim",
            "even and > 0 when model.rope is on with MLA layers (the rotated slice)",
            m.qk_rope_dim);
  check_settings_apply(m, layers);
  validate_moe(m);
}

void validate_train(const TrainConfig& t) {
  require(t.steps > 0, "train.steps", "> 0", t.steps);
  require(t.batch_size > 0, "train.batch_size", "> 0", t.batch_size);
  require(t.grad_accum >= 1, "train.grad_accum", ">= 1", t.grad_accum);
  require(t.seq_len > 0, "train.seq_len", "> 0", t.seq_len);
  require(t.lr > 0, "train.lr", "> 0", t.lr);
  require(t.weight_decay >= 0, "train.weight_decay", ">= 0", t.weight_decay);
  require(t.beta1 >= 0 && t.beta1 < 1, "train.beta1", "in [0, 1)", t.beta1);
  require(t.beta2 >= 0 && t.beta2 < 1, "train.beta2", "in [0, 1)", t.beta2);
  require(t.eps > 0, "train.eps", "> 0", t.eps);
  require(t.warmup_steps >= 0, "train.warmup_steps", ">= 0", t.warmup_steps);
  require_choice("train.schedule", t.schedule, {"cosine", "linear", "constant"});
  require(t.min_lr_ratio >= 0 && t.min_lr_ratio <= 1, "train.min_lr_ratio", "in [0, 1]",
          t.min_lr_ratio);
  require(t.grad_clip >= 0, "train.grad_clip", ">= 0 (0 = off)", t.grad_clip);
  require(t.seed >= 0, "train.seed", ">= 0", t.seed);
  require(t.log_every > 0, "train.log_every", "> 0", t.log_every);
  require(t.eval_every >= 0, "train.eval_every", ">= 0", t.eval_every);
  require(t.checkpoint_every >= 0, "train.checkpoint_every", ">= 0", t.checkpoint_every);
  require(t.keep_checkpoints >= 1, "train.keep_checkpoints", ">= 1", t.keep_checkpoints);
  require(t.schedule_steps >= 0, "train.schedule_steps", ">= 0 (0 = train.steps)",
          t.schedule_steps);
  require(t.target_accuracy >= 0 && t.target_accuracy <= 1, "train.target_accuracy", "in [0, 1]",
          t.target_accuracy);
  require_choice("train.device", t.device, {"cpu", "cuda", "auto"});
  require_choice("train.precision", t.precision, {"fp32", "tf32", "bf16"});
  require(t.threads >= 0, "train.threads", ">= 0 (0 = all cores)", t.threads);
}

void validate_eval(const EvalConfig& e) {
  for (int64_t len : e.seq_lens) require(len > 0, "eval.seq_lens", "> 0", len);
  require(e.num_examples > 0, "eval.num_examples", "> 0", e.num_examples);
  require(e.batch_size > 0, "eval.batch_size", "> 0", e.batch_size);
  require(e.seed >= 0, "eval.seed", ">= 0", e.seed);
}

// Token ids are int32 [rows, T] host arrays: past 2^31 tokens in one batch or eval slice
// nothing would fit; refused here instead of an allocation failure after the run directory is
// written.
constexpr int64_t kMaxTokens = int64_t{1} << 31;

void check_tokens(int64_t rows, const char* rows_key, int64_t len, const char* len_key) {
  if (len > kMaxTokens / rows)
    throw UserError(
        fmt::format("{} x {} = {} x {} tokens is more than 2^31", rows_key, len_key, rows, len));
}

void validate_sizes(const RunConfig& c) {
  // Token ids are int32.
  require(c.task.vocab_size < kMaxTokens, "task.vocab_size", "< 2^31", c.task.vocab_size);
  // A rough parameter count (embeddings, head, projections of every layer), in double so huge
  // values cannot overflow: a model that cannot be allocated is refused before any work.
  const ModelConfig& m = c.model;
  const double d = static_cast<double>(m.d_model);
  const double inner = std::max(d, static_cast<double>(m.num_heads) *
                                       static_cast<double>(m.head_dim) * std::max(1.0, m.expand_v));
  const double params = 2 * static_cast<double>(c.task.vocab_size) * d +
                        static_cast<double>(m.n_layers) * 8 * d *
                            std::max({inner, static_cast<double>(m.mlp_hidden),
                                      d * static_cast<double>(m.mamba2.expand)});
  if (params > 1e11)
    throw UserError(fmt::format(
        "model: about {:.3g} parameters (model.d_model {}, model.n_layers {}, model.num_heads {} "
        "x model.head_dim {}, task.vocab_size {}); more than 1e11 cannot be trained here",
        params, m.d_model, m.n_layers, m.num_heads, m.head_dim, c.task.vocab_size));
  int64_t longest = c.train.seq_len;
  for (int64_t len : c.task.train_seq_lens) longest = std::max(longest, len);
  check_tokens(c.train.batch_size, "train.batch_size", longest, "train.seq_len");
  for (int64_t len : c.eval.seq_lens)
    check_tokens(c.eval.num_examples, "eval.num_examples", len, "eval.seq_lens");
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string last_part(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

}  // namespace

std::string closest_key(const std::string& unknown) {
  std::set<std::string> candidates(known_config_keys().begin(), known_config_keys().end());
  for (const auto& key : known_config_keys()) {
    for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1)) {
      candidates.insert(key.substr(0, dot));
    }
  }
  // A right name in the wrong section (`lr` for `train.lr`) scores as a near miss.
  std::string best;
  size_t best_score = std::string::npos;
  for (const auto& key : candidates) {
    size_t score = edit_distance(unknown, key);
    if (last_part(unknown) == last_part(key)) score = std::min<size_t>(score, 1);
    if (score < best_score) best_score = score, best = key;
  }
  return best_score <= std::max<size_t>(3, unknown.size() / 3) ? best : "";
}

void resolve_and_validate(RunConfig& c) {
  validate_task(c.task);
  // Prepared LM data carries its vocabulary in its manifest (tasks/lm_shards.cpp checks it).
  if (c.task.vocab_size == 0 && !(c.task.name == "lm" && !c.task.lm.data.empty())) {
    c.task.vocab_size = c.task.name == "mqar" ? 8192 : c.task.name == "lm" ? 256 : 128;
  }
  if (c.model.num_kv_heads == 0) c.model.num_kv_heads = c.model.num_heads;
  validate_model(c.model);
  validate_train(c.train);
  if (c.eval.seq_lens.empty()) c.eval.seq_lens = {c.train.seq_len};
  validate_eval(c.eval);
  require(c.dist.bucket_mb > 0, "dist.bucket_mb", "> 0", c.dist.bucket_mb);
  validate_sizes(c);
  if (c.name.empty()) {
    std::vector<std::string> kinds;  // distinct mixers in layer order: "mqar_kda-attention"
    for (const auto& mixer : layer_mixers(c.model)) {
      if (std::find(kinds.begin(), kinds.end(), mixer) == kinds.end()) kinds.push_back(mixer);
    }
    c.name = fmt::format("{}_{}", c.task.name, fmt::join(kinds, "-"));
  }
  if (c.out_dir.empty()) throw UserError("out_dir must not be empty");
}

}  // namespace config_detail

}  // namespace kimi
