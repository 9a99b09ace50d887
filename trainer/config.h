// The run configuration: typed structs decoded once, strictly, from YAML plus key=value
// overrides (STYLE.md item 12; nanoGPT/Hydra habits). Defaults follow the paper's synthetic
// setting (docs/paper.md#synthetic-tasks); every choice the paper leaves open is a key documented
// here or in the layer that owns it: ModelConfig in models/model_config.h, TaskConfig and
// EvalConfig in tasks/task_config.h. Nothing outside trainer/config*.cpp touches YAML::Node.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/model_config.h"
#include "tasks/task_config.h"

namespace kimi {

struct TrainConfig {
  int64_t steps = 2000;
  int64_t batch_size = 64;
  // Micro-batches per optimizer step: each step sees batch_size * grad_accum rows, with the
  // gradient of one batch that large (trainer/grad_accum.h); memory is that of batch_size rows.
  int64_t grad_accum = 1;
  int64_t seq_len = 256;
  double lr = 1e-3;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  int64_t warmup_steps = 100;
  std::string schedule = "cosine";  // cosine | linear | constant (after warmup)
  // The step the cosine/linear decay reaches min_lr at (0 = train.steps); later steps keep
  // min_lr. Set by `run --resume DIR train.steps=M` to the old train.steps, so the rate of no
  // step changes when a run is extended.
  int64_t schedule_steps = 0;
  double min_lr_ratio = 0.1;  // final lr = lr * min_lr_ratio
  double grad_clip = 1.0;     // 0 = off
  int64_t seed = 0;
  int64_t log_every = 10;
  int64_t eval_every = 200;        // 0 = only at the end
  int64_t checkpoint_every = 500;  // 0 = only at the end
  int64_t keep_checkpoints = 2;    // the newest K stay; older ones go once a new one is written
  double target_accuracy = 0.0;    // 0 = off; stop early once every eval slice reaches it
  std::string device = "auto";     // cpu | cuda | auto (cuda when a GPU is present)
  // fp32 | tf32 | bf16: GPU products (core/backend/precision.h); the CPU ignores it
  std::string precision = "bf16";
  int64_t threads = 0;  // 0 = all cores
};

// Data-parallel runs (WORLD_SIZE > 1, or `run --ranks N`; README, "Several GPUs").
struct DistConfig {
  double bucket_mb = 25;  // gradients are summed over ranks in buckets of this many MiB
};

struct RunConfig {
  std::string name;              // run name; empty = "<task>_<mixers>" (resolved at load)
  std::string out_dir = "runs";  // the run directory is out_dir/name
  TaskConfig task;
  ModelConfig model;
  TrainConfig train;
  EvalConfig eval;
  DistConfig dist;
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

// layer_mixers(const ModelConfig&) (models/model_config.h) gives the mixer of each layer.

}  // namespace kimi
