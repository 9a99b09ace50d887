// What a fair comparison of mixers needs beside accuracy, counted from the model config alone
// (no model is built): parameters, the recurrent state a layer carries per sequence, and FLOPs
// per token. Zoology's users found published comparisons with wrong state sizes; these numbers
// come from the same sizes the layers are built with, and tests/flops_test.cpp checks the
// parameter counts against built models and the FLOPs against a hand count.
//
// FLOPs convention (Kaplan et al. 2020; Chinchilla): a multiply-add is 2 FLOPs. Counted: every
// linear map (2 * in * out per token, the LM head included), the short convolutions (2 * width
// per channel), and the mixer's core in the form the trainer runs -- the chunkwise delta rule
// (docs/math.md; chunk C = min(chunk_size, seq_len)), Mamba2's chunkwise SSD, causal softmax
// attention over seq_len tokens. Not counted: norms, activations, gates and other elementwise
// work, softmax, the embedding lookup, the optimizer (each well under 1% at these sizes).
// Training = forward + backward = 3 x forward (the backward pass costs two forward passes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/model_config.h"

namespace kimi::models {

struct MixerCost {
  std::string kind;
  int64_t params = 0;              // one layer of this mixer
  int64_t state_elems = 0;         // per sequence: recurrent state, or attention's KV cache
  int64_t conv_state_elems = 0;    // per sequence: short-convolution tails
  double fwd_flops_per_token = 0;  // forward, one token, at seq_len
  bool grows_with_length = false;  // attention: state and FLOPs grow with seq_len
  int64_t state_bytes(int64_t bytes_per_elem = 4) const {  // fp32 by default, as trained here
    return (state_elems + conv_state_elems) * bytes_per_elem;
  }
};

// One function per mixer; seq_len sets attention's KV cache and score FLOPs and the chunk size
// actually used (a sequence shorter than chunk_size is one chunk).
MixerCost kda_cost(const ModelConfig& model, int64_t seq_len);
MixerCost gdn_cost(const ModelConfig& model, int64_t seq_len);
MixerCost deltanet_cost(const ModelConfig& model, int64_t seq_len);
MixerCost mamba2_cost(const ModelConfig& model, int64_t seq_len);
MixerCost attention_cost(const ModelConfig& model, int64_t seq_len);
MixerCost mla_cost(const ModelConfig& model, int64_t seq_len);
// By name (kda, gdn, ...); UserError for a mixer it cannot count.
MixerCost mixer_cost(const ModelConfig& model, const std::string& kind, int64_t seq_len);

struct ModelCost {
  int64_t params = 0;                // all of LanguageModel(model, vocab_size)
  int64_t embedding_params = 0;      // the input embedding (and a tied head)
  double fwd_flops_per_token = 0;    // every layer, the MLPs and the LM head
  double train_flops_per_token = 0;  // 3 x forward
  std::vector<MixerCost> layers;     // one per layer (layer_mixers order)
};

ModelCost model_cost(const ModelConfig& model, int64_t vocab_size, int64_t seq_len);

// The SwiGLU hidden size the model uses (model.mlp_hidden, or 8/3 d rounded up to 32).
int64_t mlp_hidden_size(const ModelConfig& model);

}  // namespace kimi::models
