// The smallest language model the gradient-accumulation and data-parallel tests train: one
// attention layer, d_model 16, 2 heads of 8.
#pragma once

#include "models/model_config.h"

namespace kimi {

inline ModelConfig tiny_attention_model() {
  ModelConfig m;
  m.d_model = 16;
  m.n_layers = 1;
  m.mixer = {"attention"};
  m.num_heads = 2;
  m.head_dim = 8;
  m.num_kv_heads = 2;
  return m;
}

}  // namespace kimi
