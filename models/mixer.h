// Token mixers (docs/math.md#mixers, docs/models.md#layers, docs/models.md#kimi-linear-48b): one
// interface for KDA, GDN, DeltaNet, Mamba2, softmax attention and MLA, created by name from one
// registry (zoology's mixer-by-name; FLA's split of layers/ from ops/). Parameter names follow
// FLA's / Hugging Face's state_dicts.
//
// Adding a mixer: write models/<name>_layer.{h,cpp} with a class deriving from Mixer (constructor
// `(const MixerOptions&, Rng&)`), then add one line `{"<name>", make<YourLayer>}` to the table in
// models/mixer_registry.cpp; config validation (layer_mixers) asks the registry, so the name is
// then a valid model.mixer / model.hybrid value. The table is explicit on purpose: kimi_models
// is a static library, and a self-registering static object in a layer file that nothing
// references would be dropped by the linker. Code outside the library (experiments, tests) may
// also call register_mixer().
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/nn/module.h"
#include "core/ops/mixer_ops.h"
#include "core/tensor/rng.h"

namespace kimi::models {

// Built by mixer_options: from the model config (models/model_config.h; most fields are keys
// under model.*) or from a Kimi-Linear config (models/kimi_linear.h).
struct MixerOptions {
  std::string kind = "kda";  // kda | gdn | deltanet | mamba2 | attention | mla
  int64_t d_model = 256, num_heads = 2, head_dim = 128, num_kv_heads = 0 /*0 = num_heads*/;
  double expand_v = 1.0;  // value dim per head = expand_v * head_dim (kda, gdn, deltanet)
  bool short_conv = true;
  int64_t conv_size = 4;
  // Output gate of kda and gdn: o = RMSNorm(o) * act(z). "none" = plain RMSNorm, no g_proj.
  // FLA's defaults: KDA sigmoid, GDN swish. DeltaNet always follows FLA's default (no gate).
  std::string output_gate = "sigmoid";  // sigmoid | swish | none
  bool rope = false;  // attention; MLA rotates its qk_rope_dim slice (DeepSeek-V2) when set
  double rope_theta = 10000;
  int64_t chunk_size = 64;
  RecurrenceForm form = RecurrenceForm::kChunk;
  // MLA (DeepSeek-V3 / Kimi Linear names). 0 for qk_nope_dim / v_head_dim = head_dim.
  int64_t kv_lora_rank = 64, q_lora_rank = 0, qk_nope_dim = 0, qk_rope_dim = 0, v_head_dim = 0;
  double mla_norm_eps = 1e-6;
  // Mamba2: its head count is expand * d_model / head_dim (num_heads is not used).
  int64_t d_state = 64, expand = 2, n_groups = 1;
  double norm_eps = 1e-5, init_std = 0.02;
  double dt_min = 1e-3, dt_max = 1e-1;  // kda, gdn, mamba2: initial softplus(dt_bias) range
  DType dtype = DType::kF32;            // parameter dtype (float64 for the gradient tests)
};

// Per-layer decode cache (recurrent state and conv tails, or the KV / latent cache). It holds
// values only: a forward with a state does not backpropagate into earlier pieces.
struct MixerState {
  virtual ~MixerState() = default;
};

class Mixer : public nn::Module {
 public:
  // x [B,T,d_model] -> [B,T,d_model]. With state != nullptr: starts from it (recurrent state and
  // short-conv tails, or the KV/latent cache) and leaves it updated, so running a sequence in
  // pieces (prefill then token-by-token decode) equals running it whole.
  virtual Tensor forward(const Tensor& x, MixerState* state = nullptr) = 0;
  // An empty state (zeros / no cached tokens) for `batch` sequences, in the parameters' dtype.
  virtual std::unique_ptr<MixerState> new_state(int64_t batch) const = 0;
};

using MixerFactory = std::function<std::unique_ptr<Mixer>(const MixerOptions&, Rng&)>;

// Throws kimi::UserError for an unknown kind, listing the known ones.
std::unique_ptr<Mixer> make_mixer(const MixerOptions& opt, Rng& rng);
std::vector<std::string> mixer_kinds();  // sorted
// Adds (or replaces) a kind at run time.
void register_mixer(const std::string& kind, MixerFactory factory);

}  // namespace kimi::models
