// The run configuration: typed structs decoded once, strictly, from YAML plus key=value
// overrides (STYLE.md item 12; nanoGPT/Hydra habits). Defaults follow the paper's synthetic
// setting (DESIGN.md section 6); every choice the paper leaves open is a key documented here.
// Nothing outside trainer/config*.cpp touches YAML::Node.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kimi {

struct MqarConfig {
  std::string form = "kimi";  // kimi: `k v ... <sep> q ...`; zoology: zoology's multiquery_ar
  int64_t num_kv_pairs = 0;   // 0 = seq_len / 8 at each length (zoology's T512_kv64 ratio)
  int64_t num_queries = 0;    // kimi form only; 0 = num_kv_pairs (each key queried once)
  double power_a = 0.01;      // zoology form: query gap distribution p(g) ~ g^(a-1)
};

struct PalindromeConfig {
  int64_t length = 0;      // n tokens to reverse; 0 = as many as fit: (seq_len - 1) / 2
  bool score_sep = false;  // also score x_n at <sep> (the paper's table leaves it unscored)
};

struct StackConfig {
  int64_t num_stacks = 64;  // paper: 64 independent stacks
  double push_prob = 0.5;   // else pop from a random non-empty stack (push when all empty)
};

struct LmConfig {
  std::string path;            // a text file; bytes are tokens (vocab 256)
  double eval_fraction = 0.1;  // the file's tail held out for eval windows
};

struct TaskConfig {
  std::string name = "mqar";  // palindrome | mqar | stack | lm
  // 0 = the task's default: mqar 8192 (zoology), palindrome 128, stack 128, lm 256.
  int64_t vocab_size = 0;
  MqarConfig mqar;
  PalindromeConfig palindrome;
  StackConfig stack;
  LmConfig lm;
  bool mixed_lengths = false;           // train on a length drawn from train_seq_lens per step
  std::vector<int64_t> train_seq_lens;  // used when mixed_lengths is true
};

struct Mamba2Config {
  int64_t d_state = 64;
  int64_t expand = 2;
};

struct ModelConfig {
  int64_t d_model = 256;
  int64_t n_layers = 2;
  std::vector<std::string> mixer = {"kda"};  // one name for all layers, or one per layer
  std::string hybrid;  // "kda:attention=3:1"; empty = off; when set it decides the layers
  int64_t num_heads = 2;
  int64_t head_dim = 128;
  int64_t num_kv_heads = 0;  // 0 = num_heads (resolved at load)
  double expand_v = 1.0;
  bool short_conv = true;
  int64_t conv_size = 4;
  std::string output_gate = "auto";  // auto (FLA: KDA sigmoid, GDN swish) | sigmoid | swish | none
  bool rope = false;                    // Kimi Linear's global layers use NoPE
  double rope_theta = 10000.0;
  bool mlp = false;        // zoology's MQAR models have no MLP
  int64_t mlp_hidden = 0;  // 0 = auto (the model's SwiGLU rule)
  bool tie_embeddings = false;
  double norm_eps = 1e-5;
  int64_t chunk_size = 64;
  int64_t kv_lora_rank = 64;  // MLA
  int64_t q_lora_rank = 0;    // MLA; 0 = full-rank q projection
  int64_t qk_rope_dim = 0;    // MLA; 0 = NoPE
  Mamba2Config mamba2;
  double init_std = 0.02;
};

struct TrainConfig {
  int64_t steps = 2000;
  int64_t batch_size = 64;
  int64_t seq_len = 256;
  double lr = 1e-3;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  int64_t warmup_steps = 100;
  std::string schedule = "cosine";  // cosine | linear | constant (after warmup)
  double min_lr_ratio = 0.1;        // final lr = lr * min_lr_ratio
  double grad_clip = 1.0;           // 0 = off
  int64_t seed = 0;
  int64_t log_every = 10;
  int64_t eval_every = 200;        // 0 = only at the end
  int64_t checkpoint_every = 500;  // 0 = only at the end
  double target_accuracy = 0.0;    // 0 = off; stop early once every eval slice reaches it
  std::string device = "auto";     // cpu | cuda | auto (cuda when a GPU is present)
  std::string precision = "bf16";  // fp32 | tf32 | bf16: GPU products (core/backend/precision.h); the CPU ignores it
  int64_t threads = 0;             // 0 = all cores
};

struct EvalConfig {
  std::vector<int64_t> seq_lens;  // empty = [train.seq_len] (resolved at load)
  int64_t num_examples = 256;
  int64_t batch_size = 64;
  int64_t seed = 1234;
};

struct RunConfig {
  std::string name;              // run name; empty = "<task>_<mixers>" (resolved at load)
  std::string out_dir = "runs";  // the run directory is out_dir/name
  TaskConfig task;
  ModelConfig model;
  TrainConfig train;
  EvalConfig eval;
};

// Reads yaml_path ("" = defaults only), applies `dotted.key=value` overrides (values parsed as
// YAML), decodes, resolves defaults, validates. Throws kimi::UserError (one line) on any problem.
RunConfig load_config(const std::string& yaml_path, const std::vector<std::string>& overrides);

// The resolved config as YAML; load_config on it gives the same RunConfig.
std::string to_yaml(const RunConfig& config);

// Nested JSON (sections as objects); flatten_dotted turns it into {"train.lr": 0.001, ...}
// (lists stay lists) for one-row-per-run summary CSVs.
nlohmann::json to_json(const RunConfig& config);
nlohmann::json flatten_dotted(const nlohmann::json& nested);

// Every leaf key, dotted, in declaration order.
const std::vector<std::string>& known_config_keys();

// The valid mixer names: kda, gdn, deltanet, mamba2, attention, mla.
const std::vector<std::string>& known_mixers();

// The mixer of each layer: model.hybrid "a:b=x:y" gives [a]*x then [b]*y per group (the global
// layer last; a short last group keeps its b's at the end), else model.mixer (one name for all
// layers, or exactly n_layers names). Throws UserError naming the key.
std::vector<std::string> layer_mixers(const ModelConfig& model);

}  // namespace kimi
