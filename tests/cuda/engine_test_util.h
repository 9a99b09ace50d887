// Shared by the decode engine's GPU tests (kimi_cuda_engine_test: engine_test.cpp,
// engine_prefill_test.cpp, engine_batch_test.cpp): the engine or a skip, decoding loops, the
// f32 reference model with the engine's bf16 weights, the odd-size config, row errors, and an
// environment override for the kernel switches (KIMI_ENGINE_*), read when an engine is made.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "core/tensor/dtype.h"
#include "core/tensor/error.h"
#include "inference/engine/decode_engine.h"
#include "models/kimi_linear.h"
#include "tests/golden.h"

namespace kimi::inference::engine::etest {

inline std::unique_ptr<DecodeEngine> engine_or_skip(const WeightLayout& l) {
  try {
    return make_decode_engine(l);
  } catch (const UserError& e) {
    if (std::string(e.what()).find("no CUDA device") != std::string::npos) return nullptr;
    throw;
  }
}

#define ENGINE_OR_SKIP(var, layout)                                    \
  auto var = ::kimi::inference::engine::etest::engine_or_skip(layout); \
  if (!var) GTEST_SKIP() << "no CUDA device";

inline std::string fmt_err(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2g", x);
  return b;
}

// Token-by-token decode of ids [B, T] (row-major) in slots 0..B-1 together -> logits [B, T, V].
inline std::vector<float> decode_all(DecodeEngine& e, const std::vector<int64_t>& ids, int B,
                                     int T) {
  const int64_t V = e.layout().config.vocab_size;
  std::vector<float> out(static_cast<size_t>(B) * T * V), step;
  std::vector<int32_t> slots(B), tokens(B);
  std::iota(slots.begin(), slots.end(), 0);
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) tokens[b] = static_cast<int32_t>(ids[b * T + t]);
    e.step(slots, tokens, &step);
    for (int b = 0; b < B; ++b)
      std::copy(step.begin() + b * V, step.begin() + (b + 1) * V,
                out.begin() + (static_cast<int64_t>(b) * T + t) * V);
  }
  return out;
}

// The reference model with every weight rounded to bf16 (what the engine holds), f32 arithmetic.
inline std::unique_ptr<models::KimiLinearModel> f32_model_with_bf16_weights(
    const std::string& dir) {
  auto m = models::KimiLinearModel::from_pretrained(dir, DType::kF32);
  for (Tensor& p : m->parameters()) {
    float* d = p.data<float>();
    for (int64_t i = 0; i < p.numel(); ++i) d[i] = bf16_to_float(float_to_bf16(d[i]));
  }
  return m;
}

// Relative error of each row of V logits; the median of them.
inline double median_row_err(const std::vector<float>& got, const std::vector<double>& want,
                             int64_t V) {
  std::vector<double> e;
  for (size_t r = 0; r * V < want.size(); ++r) {
    std::vector<double> a(got.begin() + r * V, got.begin() + (r + 1) * V);
    e.push_back(
        test::rel_err(a, std::vector<double>(want.begin() + r * V, want.begin() + (r + 1) * V)));
  }
  std::nth_element(e.begin(), e.begin() + e.size() / 2, e.end());
  return e[e.size() / 2];
}

// A hybrid of odd sizes: KDA head_dim 12 (3 heads), MLA rank 20 + rope 6, d 60, 6 experts top-3.
inline models::KimiLinearConfig odd_config() {
  models::KimiLinearConfig c;
  c.vocab_size = 53, c.hidden_size = 60, c.num_hidden_layers = 4;
  c.num_attention_heads = 3, c.head_dim = 10, c.intermediate_size = 44;
  c.kv_lora_rank = 20, c.q_lora_rank = 0, c.qk_nope_head_dim = 10, c.qk_rope_head_dim = 6;
  c.v_head_dim = 14;
  c.kda_head_dim = 12, c.kda_num_heads = 3, c.short_conv_kernel_size = 4;
  c.kda_layers = {1, 2, 4}, c.full_attn_layers = {3};
  c.num_experts = 6, c.num_experts_per_token = 3, c.num_shared_experts = 1;
  c.moe_intermediate_size = 18, c.first_k_dense_replace = 1;
  c.routed_scaling_factor = 2.446;
  return c;
}

// Slots 0..B-1 at lengths s % 4, then `steps` tokens each, batched (rows in reverse slot order)
// or alone: logits [steps, B, V], slot order within a step.
inline void decode_mixed(DecodeEngine& e, int B, int steps, std::vector<float>* out, bool alone) {
  const int64_t V = e.layout().config.vocab_size;
  auto token = [&](int s, int t) { return static_cast<int32_t>((s * 31 + t * 7 + 2) % V); };
  auto prefix = [](int s) { return s % 4; };  // slots at lengths 0..3 when the batch starts
  e.reset();
  std::vector<float> lg;
  for (int s = 0; s < B; ++s)
    for (int t = 0; t < prefix(s); ++t) e.step({s}, {token(s, t)}, nullptr);
  out->assign(static_cast<size_t>(B) * steps * V, 0.f);
  for (int j = 0; j < steps; ++j) {
    if (alone) {
      for (int s = 0; s < B; ++s) {
        e.step({s}, {token(s, prefix(s) + j)}, &lg);
        std::copy(lg.begin(), lg.end(), out->begin() + (static_cast<int64_t>(j) * B + s) * V);
      }
      continue;
    }
    // Rows in reverse slot order: the batch row and the slot differ.
    std::vector<int32_t> slots, toks;
    for (int s = B - 1; s >= 0; --s) slots.push_back(s), toks.push_back(token(s, prefix(s) + j));
    e.step(slots, toks, &lg);
    for (int r = 0; r < B; ++r)
      std::copy(lg.begin() + r * V, lg.begin() + (r + 1) * V,
                out->begin() + (static_cast<int64_t>(j) * B + slots[r]) * V);
  }
}

inline std::vector<double> row_errs(const std::vector<float>& got, const std::vector<float>& want,
                                    int64_t V) {
  std::vector<double> e;
  for (size_t r = 0; r * V < want.size(); ++r)
    e.push_back(
        test::rel_err(std::vector<double>(got.begin() + r * V, got.begin() + (r + 1) * V),
                      std::vector<double>(want.begin() + r * V, want.begin() + (r + 1) * V)));
  std::sort(e.begin(), e.end());
  return e;
}

class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~EnvGuard() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

}  // namespace kimi::inference::engine::etest
