// Dimensions of one linear-recurrence call (the gated delta rule of DeltaNet / GDN / KDA, and the
// gated linear recurrence of Mamba2's SSD core), shared by the CPU and CUDA kernels. Activations
// are [B,T,H,*] and states [B,H,K,V], contiguous row-major. Math: docs/math.md.
#pragma once

#include <cstdint>

namespace kimi {

enum class GateKind { kNone, kScalar, kPerChannel };  // DeltaNet, GDN, KDA

struct RecurrenceDims {
  int64_t B, T, H, K, V;
  GateKind gate;
  double scale;        // applied to q (1/sqrt(K) for the delta rule; 1 for Mamba2)
  int64_t chunk = 64;  // chunk size of the chunkwise form; the last chunk may be shorter
};

}  // namespace kimi
