// What the simulator suites share (simulator_counts_test.cpp, simulator_roofline_test.cpp,
// simulator_inputs_test.cpp): a made-up tiny hybrid small enough to count every weight by hand,
// decode_step's rows by layer kind, a GPU profile with round numbers, and the check that a
// UserError's message is one line naming what it should.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "inference/simulator.h"

namespace kimi::inference::simulator_test {

using models::KimiLinearConfig;

// Layer 0: KDA + dense SwiGLU; layer 1: MLA + MoE. Small enough to count every weight by hand.
inline KimiLinearConfig tiny() {
  KimiLinearConfig c;
  c.vocab_size = 10, c.hidden_size = 4, c.num_hidden_layers = 2;
  c.num_attention_heads = 1, c.intermediate_size = 6;
  c.kv_lora_rank = 2, c.q_lora_rank = 0, c.qk_nope_head_dim = 2, c.qk_rope_head_dim = 1;
  c.v_head_dim = 2;
  c.kda_head_dim = 2, c.kda_num_heads = 1, c.short_conv_kernel_size = 2;
  c.kda_layers = {1}, c.full_attn_layers = {2};
  c.num_experts = 4, c.num_experts_per_token = 2, c.num_shared_experts = 1;
  c.moe_intermediate_size = 3, c.first_k_dense_replace = 1;
  return c;
}

inline std::map<std::string, LayerCost> by_kind(const std::vector<LayerCost>& v) {
  std::map<std::string, LayerCost> m;
  for (const LayerCost& l : v) m[l.kind] = l;
  return m;
}

// A profile with round numbers, so times can be worked out by hand.
inline GpuProfile round_profile() {
  GpuProfile g;
  g.name = "test";
  g.memory_bytes = 1e12, g.reserve_bytes = 0, g.bandwidth = 1e12;
  g.gemm_flops = 1e15, g.attention_flops = 5e14, g.kda_chunk_flops = 1e13, g.fp32_flops = 1e14;
  g.launch_s_per_layer = 1e-6;
  return g;
}

// A UserError's message is one line and names what it should.
inline void one_line(const std::string& msg, const std::string& names) {
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_NE(msg.find(names), std::string::npos) << msg;
}

}  // namespace kimi::inference::simulator_test
