// Dimensions of one causal-attention call, shared by the CPU and CUDA kernels.
#pragma once

#include <cstdint>

namespace kimi {

// Hq % Hkv == 0 (GQA: q head h uses kv head h / (Hq/Hkv)). Query i (0-based among Tq) sits at
// absolute position i + (Tk - Tq) and attends keys j <= that (a KV cache: Tk >= Tq).
struct AttentionDims {
  int64_t B, Tq, Tk, Hq, Hkv, D, Dv;
  double scale;
};

}  // namespace kimi
