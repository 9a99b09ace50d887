// KimiLinearModel: construction from a config, Hugging Face checkpoint loading (name mapping,
// shards), the forward with decode caches, and the cache report (HF modeling_kimi.py).
#include "models/kimi_linear.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/autograd/autograd.h"
#include "core/io/tensor_io.h"
#include "models/mixer_common.h"
#include "models/mla_layer.h"

namespace kimi::models {

MixerOptions mixer_options(const KimiLinearConfig& c, int64_t layer, DType dtype) {
  MixerOptions o;
  o.d_model = c.hidden_size;
  o.norm_eps = c.rms_norm_eps;  // KDA's o_norm and MLA's o-side norms use rms_norm_eps
  o.dtype = dtype;
  if (c.is_mla(layer)) {
    o.kind = "mla";
    o.num_heads = c.num_attention_heads;
    o.head_dim = c.qk_nope_head_dim;
    o.qk_nope_dim = c.qk_nope_head_dim;
    o.qk_rope_dim = c.qk_rope_head_dim;  // NoPE: the slice enters the scores unrotated
    o.v_head_dim = c.v_head_dim;
    o.kv_lora_rank = c.kv_lora_rank;
    o.q_lora_rank = c.q_lora_rank;
    o.mla_norm_eps = c.mla_norm_eps;  // kv_a_layernorm: 1e-6
  } else {
    o.kind = "kda";
    o.num_heads = c.kda_num_heads;
    o.head_dim = c.kda_head_dim;
    o.expand_v = 1.0;
    o.short_conv = true;
    o.conv_size = c.short_conv_kernel_size;
    o.output_gate = "sigmoid";  // HF: FusedRMSNormGated(activation="sigmoid")
  }
  return o;
}

MoeOptions moe_options(const KimiLinearConfig& c, DType dtype) {
  MoeOptions m;
  m.d_model = c.hidden_size, m.num_experts = c.num_experts, m.top_k = c.num_experts_per_token;
  m.expert_hidden = c.moe_intermediate_size, m.num_shared = c.num_shared_experts;
  m.routed_scaling_factor = c.routed_scaling_factor, m.renormalize = c.moe_renormalize;
  m.num_groups = c.num_expert_group, m.topk_group = c.topk_group;
  m.dtype = dtype;
  return m;
}

KimiDecoderLayer::KimiDecoderLayer(const KimiLinearConfig& c, int64_t layer, DType dtype, Rng& rng)
    : is_mla(c.is_mla(layer)) {
  const int64_t d = c.hidden_size;
  const nn::InitOptions init{0.02, dtype};
  self_attn = register_module(
      "self_attn", std::shared_ptr<Mixer>(make_mixer(mixer_options(c, layer, dtype), rng)));
  if (c.is_moe(layer)) {
    block_sparse_moe = register_module(
        "block_sparse_moe", std::make_shared<SparseMoeBlock>(moe_options(c, dtype), rng));
  } else {
    mlp = register_module("mlp", std::make_shared<nn::SwiGLU>(d, c.intermediate_size, rng, init));
  }
  input_layernorm =
      register_module("input_layernorm", std::make_shared<nn::RMSNorm>(d, c.rms_norm_eps, dtype));
  post_attention_layernorm = register_module(
      "post_attention_layernorm", std::make_shared<nn::RMSNorm>(d, c.rms_norm_eps, dtype));
}

Tensor KimiDecoderLayer::forward(const Tensor& x, MixerState* state) {
  Tensor h = x + self_attn->forward(input_layernorm->forward(x), state);
  Tensor n = post_attention_layernorm->forward(h);
  return h + (block_sparse_moe ? block_sparse_moe->forward(n) : mlp->forward(n));
}

KimiLinearModel::KimiLinearModel(const KimiLinearConfig& c, DType dtype, uint64_t seed)
    : config_(c), dtype_(dtype) {
  if (dtype != DType::kF32 && dtype != DType::kF64)
    throw UserError(fmt::format("KimiLinearModel: dtype {} (want f32 or f64)", dtype_name(dtype)));
  Rng rng(seed);
  const nn::InitOptions init{0.02, dtype};
  embed_tokens = register_module("model.embed_tokens", std::make_shared<nn::Embedding>(
                                                           c.vocab_size, c.hidden_size, rng, init));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layers.push_back(register_module("model.layers." + std::to_string(i),
                                     std::make_shared<KimiDecoderLayer>(c, i, dtype, rng)));
  norm = register_module("model.norm",
                         std::make_shared<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, dtype));
  if (!c.tie_word_embeddings)
    lm_head = register_module(
        "lm_head", std::make_shared<nn::Linear>(c.hidden_size, c.vocab_size, false, rng, init));
}

std::string hf_to_kimi_name(const std::string& hf_name) {
  static const std::pair<const char*, const char*> kMap[] = {
      {".self_attn.f_a_proj.", ".self_attn.f_proj.0."},
      {".self_attn.f_b_proj.", ".self_attn.f_proj.1."},
      {".self_attn.g_a_proj.", ".self_attn.g_proj.0."},
      {".self_attn.g_b_proj.", ".self_attn.g_proj.1."},
  };
  for (const auto& [from, to] : kMap) {
    const size_t at = hf_name.find(from);
    if (at != std::string::npos)
      return hf_name.substr(0, at) + to + hf_name.substr(at + std::strlen(from));
  }
  return hf_name;
}

std::vector<std::string> checkpoint_files(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      throw UserError(fmt::format("{}: not valid JSON ({})", index.string(), e.what()));
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw UserError(index.string() + ": no 'weight_map' object");
    std::set<std::string> shards;
    for (const auto& [name, file] : j["weight_map"].items())
      shards.insert((fs::path(dir) / file.get<std::string>()).string());
    return {shards.begin(), shards.end()};
  }
  const fs::path single = fs::path(dir) / "model.safetensors";
  if (!fs::exists(single))
    throw UserError(
        fmt::format("{}: neither model.safetensors nor model.safetensors.index.json", dir));
  return {single.string()};
}

void KimiLinearModel::load_hf_weights(const std::string& dir) {
  std::map<std::string, Tensor> params;
  for (auto& [name, t] : named_parameters()) params.emplace(name, t);
  std::set<std::string> loaded;
  for (const std::string& file : checkpoint_files(dir)) {
    // One shard at a time: its tensors are copied in, then freed.
    for (auto& [hf_name, t] : io::load_tensors(file)) {
      const std::string name = hf_to_kimi_name(hf_name);
      auto it = params.find(name);
      if (it == params.end())
        throw UserError(fmt::format("{}: unexpected tensor '{}' (no such parameter '{}')", file,
                                    hf_name, name));
      Tensor& p = it->second;
      Tensor src = t;
      // HF's A_log is [1,1,H,1]; ours is [H]. Other shapes must match exactly.
      if (name.ends_with(".A_log") && t.numel() == p.numel()) src = t.reshape(p.shape());
      if (src.shape() != p.shape())
        throw UserError(fmt::format("{}: tensor '{}' has shape {}, parameter '{}' wants {}", file,
                                    hf_name, shape_str(t.shape()), name, shape_str(p.shape())));
      p.copy_(src);
      loaded.insert(name);
    }
  }
  for (auto& [name, p] : params) {
    if (loaded.count(name)) continue;
    if (name.ends_with(".self_attn.g_proj.1.bias")) {  // HF's g_b_proj has no bias
      p.zero_();
      continue;
    }
    throw UserError(fmt::format("{}: checkpoint has no tensor for parameter '{}' (shape {})", dir,
                                name, shape_str(p.shape())));
  }
}

std::unique_ptr<KimiLinearModel> KimiLinearModel::from_pretrained(const std::string& dir,
                                                                  DType dtype) {
  const KimiLinearConfig c = load_kimi_linear_config(dir + "/config.json");
  auto model = std::make_unique<KimiLinearModel>(c, dtype);
  model->load_hf_weights(dir);
  return model;
}

Tensor kimi_linear_pass(const Tensor& ids, KimiLinearState* state, size_t num_layers,
                        const nn::Embedding& embed, const LayerStep& layer, const nn::RMSNorm& norm,
                        const nn::Linear* lm_head) {
  NoGradGuard no_grad;
  KIMI_CHECK(ids.dim() == 2, "Kimi-Linear: ids must be [B, T], got {}", shape_str(ids.shape()));
  if (state)
    KIMI_CHECK(state->layers.size() == num_layers, "Kimi-Linear: state for {} layers, model has {}",
               state->layers.size(), num_layers);
  Tensor h = embed.forward(ids);
  for (size_t i = 0; i < num_layers; ++i) h = layer(i, h, state ? state->layers[i].get() : nullptr);
  if (state) state->length += ids.size(1);
  h = norm.forward(h);
  return lm_head ? lm_head->forward(h) : linear(h, embed.weight);
}

Tensor KimiLinearModel::forward(const Tensor& ids, KimiLinearState* state) {
  return kimi_linear_pass(
      ids, state, layers.size(), *embed_tokens,
      [&](size_t i, const Tensor& h, MixerState* s) { return layers[i]->forward(h, s); }, *norm,
      lm_head.get());
}

KimiLinearState KimiLinearModel::new_state(int64_t batch) const {
  KimiLinearState s;
  for (const auto& layer : layers) s.layers.push_back(layer->self_attn->new_state(batch));
  return s;
}

CacheUsage KimiLinearModel::cache_usage(const KimiLinearState& state) {
  CacheUsage u;
  u.tokens = state.length;
  auto bytes = [](const Tensor& t) {
    return t.defined() ? t.numel() * static_cast<int64_t>(dtype_size(t.dtype())) : int64_t{0};
  };
  for (const auto& s : state.layers) {
    if (const auto* r = dynamic_cast<const RecurrentState*>(s.get())) {
      ++u.kda_layers;
      u.batch = r->batch;
      u.kda_bytes += bytes(r->h);
      for (const Tensor& tail : r->conv_tails) u.kda_bytes += bytes(tail);
    } else if (const auto* m = dynamic_cast<const LatentCacheState*>(s.get())) {
      ++u.mla_layers;
      u.batch = m->batch;
      u.mla_bytes += bytes(m->latent) + bytes(m->k_shared);
    }
  }
  return u;
}

}  // namespace kimi::models
