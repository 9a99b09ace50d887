// Bytes moved and FLOPs done by each layer type of a Kimi-Linear model in one decode step (a
// batch of sequences at one context length) and in one prefill chunk, counted from the config.
// Weights bf16, KDA state and conv tails fp32, MLA latent bf16 (the reference dtypes of
// model-info); activations other than the embedding rows and the logits are not counted (they
// are KB per token against MB of weights and cache).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/kimi_linear_config.h"

namespace kimi::inference {

// Bytes of one element of each kind of data.
struct Dtypes {
  int64_t weight = 2;  // bf16
  int64_t state = 4;   // KDA recurrent state and conv tails, fp32
  int64_t latent = 2;  // MLA latent + rope slice, bf16
  int64_t logits = 4;  // fp32 logits written per sequence
};

// One layer's work in one step, split by the ceiling that bounds it.
struct Work {
  double weight_bytes = 0;  // parameters read
  double cache_bytes = 0;   // KDA state / MLA latent read + written
  double other_bytes = 0;   // embedding rows read, logits written
  double gemm_flops = 0;    // dense matrix products (bf16 tensor cores)
  double attn_flops = 0;    // attention scores and values (bf16 tensor cores)
  double recur_flops = 0;   // KDA recurrence and short conv (chunk kernels or fp32 decode)
  double bytes() const { return weight_bytes + cache_bytes + other_bytes; }
  double flops() const { return gemm_flops + attn_flops + recur_flops; }
  Work& operator+=(const Work& o);
};
Work operator*(double s, const Work& w);

// A layer type of the model: how many layers have it and the work of one of them.
struct LayerCost {
  std::string kind;  // "kda", "mla", "moe_ffn", "dense_ffn", "embed_head"
  int64_t count = 0;
  Work work;
};

// The parameters of one layer of each type (the Hugging Face shapes, as parameter_count), split
// into those a matrix product multiplies per token and the rest (norm weights, biases, convs).
struct LayerParams {
  int64_t kda_matmul = 0, kda_other = 0;  // KDA mixer (with its block's input RMSNorm)
  int64_t mla_matmul = 0, mla_other = 0;  // MLA mixer (with its block's input RMSNorm)
  // The parts of kda_matmul / mla_matmul that tensor parallelism over heads cannot split: every
  // rank needs the whole low-rank intermediate (KDA's f_a, g_a; MLA's q_a, kv_a).
  int64_t kda_shared = 0, mla_shared = 0;
  int64_t input_norm = 0;               // the block's input RMSNorm (in kda_other, mla_other)
  int64_t expert = 0;                   // one routed or shared SwiGLU expert
  int64_t router = 0, router_bias = 0;  // MoE gate and e_score_correction_bias
  int64_t dense_ffn = 0;                // the dense SwiGLU (first_k_dense_replace layers)
  int64_t ffn_norm = 0;                 // the block's post-attention RMSNorm
  int64_t head = 0, final_norm = 0;     // LM head (the table when tied) and model.norm
};
LayerParams layer_params(const models::KimiLinearConfig& c);

// Expected number of distinct routed experts a batch of `tokens` tokens touches in one MoE
// layer, with top-k of E drawn uniformly: E (1 - (1 - k/E)^tokens). Exactly k for one token.
double experts_touched(const models::KimiLinearConfig& c, int64_t tokens);

// One decode step: `batch` sequences each holding `context` tokens in its cache, one new token
// each. MLA attends to the context plus the new token in the absorbed form (scores over the
// 576-d cached key, values over the 512-d latent). With gpus > 1, one GPU's share when the model
// runs tensor-parallel over KDA and MLA heads, the dense and shared-expert FFNs' intermediate
// dimension and the LM head's vocabulary, and expert-parallel over the routed experts (evenly
// loaded): KDA's state splits with its heads, MLA's latent cache does not (every head reads the
// whole latent), and norms, routers and the low-rank down projections are replicated. The
// collectives between the GPUs are not in it (parallel_costs.h).
std::vector<LayerCost> decode_step(const models::KimiLinearConfig& c, int64_t batch,
                                   int64_t context, const Dtypes& dt = {}, int gpus = 1);

// One chunk of a single sequence's prefill: `chunk` tokens after `prefix` already cached. KDA
// runs the chunk kernels (eq. 13, chunk size 64); MLA runs the non-absorbed form: decompresses
// the cached prefix (kv_b over `prefix` tokens) and attends causally with 192-d keys and
// 128-d values. The LM head runs only for the prompt's last token (`last`).
std::vector<LayerCost> prefill_chunk(const models::KimiLinearConfig& c, int64_t prefix,
                                     int64_t chunk, bool last, const Dtypes& dt = {});

// The parameters one GPU keeps resident, in bytes, under decode_step's split over `gpus` GPUs
// (every routed expert of its share, not only those a step touches). gpus = 1: the whole model.
double resident_weight_bytes(const models::KimiLinearConfig& c, const Dtypes& dt, int gpus = 1);

// Sum over layer types, each times its count.
Work total(const std::vector<LayerCost>& layers);

}  // namespace kimi::inference
