// Parity cases of the sequential state walks on bf16 tensor cores
// (core/cuda/delta_rule/delta_rule_chunk_state_mma.cu): the chunk forward's walk and the chunk
// backward's F2 stage (the same walk in store mode), every V-tile width with and without partner
// warps, against the CPU oracle in float64, the WMMA TF32 kernels they replace, and (paired
// widths) the unpaired walk in bits. kimi_cuda_tests --state / --bwd-state.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/cuda/recurrence_parity.h"

namespace kimi::cuda_test {

// The bf16 chunk forward's tensor-core state kernel (delta_rule_chunk_state_mma.cu) with each
// V-tile width (KIMI_CUDA_STATE_WARPS = 1, 2, 4, 8 warps of 16 columns), with and without O warps
// ("o", KIMI_CUDA_STATE_OWARPS=1; checked against the CPU and in bits against the same width
// unpaired, "~wN"; "l": paired with KIMI_CUDA_STATE_PREFETCH=late, the same bits), and the WMMA
// TF32 kernel
// it replaces (KIMI_CUDA_STATE_KERNEL=old), on the shapes where its tiles have tails: V not a
// multiple of 16 (a warp half past V), tiles past V (idle warps), K < the padded head size,
// one short chunk, no h0. `quick` keeps two shapes (for the sanitizers).
void state_kernel_cases(Report& rep, bool quick) {
  struct Case {
    int64_t B, T, H, K, V;
    GateKind gate;
    bool h0;
  };
  const Case cases[] = {
      {2, 130, 3, 48, 40, GateKind::kScalar, true},
      {1, 200, 2, 128, 96, GateKind::kPerChannel, true},
      {2, 64, 2, 64, 128, GateKind::kNone, true},
      {1, 150, 2, 96, 72, GateKind::kPerChannel, false},
      {2, 77, 2, 128, 64, GateKind::kScalar, true},
      {1, 40, 1, 32, 64, GateKind::kPerChannel, true},
  };
  uint64_t seed = 700;
  int n = 0;
  for (const Case& c : cases) {
    if (quick && ++n > 2) break;
    RecurrenceDims d{c.B, c.T, c.H, c.K, c.V, c.gate, 1.0 / std::sqrt(double(c.K)), 64};
    Problem p = random_problem(d, true, ++seed);
    if (!c.h0) p.h0.clear();
    const Problem pb = as_type<__nv_bfloat16>(p);
    const Result ref = cpu_reference(pb, false);
    Result fused[5];  // O products in the chain warps, by warps a block (1, 2, 4)
    for (const char* variant : {"1", "2", "4", "8", "1o", "2o", "4o", "1l", "2l", "4l", "old"}) {
      const std::string v = variant;
      const bool old = v == "old", late = v.back() == 'l', ow = v.back() == 'o' || late;
      if (late) setenv("KIMI_CUDA_STATE_PREFETCH", "late", 1);
      if (old)
        setenv("KIMI_CUDA_STATE_KERNEL", "old", 1);
      else
        setenv("KIMI_CUDA_STATE_WARPS", v.substr(0, 1).c_str(), 1);
      setenv("KIMI_CUDA_STATE_OWARPS", ow ? "1" : "0", 1);
      char tag[128];
      std::snprintf(tag, sizeof tag, "state %s%s %s %s%s bf16", old ? "" : "w", variant,
                    gate_name(c.gate), dims_str(d).c_str(), c.h0 ? "" : " no h0");
      const Result got = cuda_run<__nv_bfloat16>(pb, Form::kChunk, false);
      compare(rep, tag, got, ref, kTolBf16, kTolBf16);
      // The O warps take the same bf16 fragments and run the same products in the same order.
      const int w = old ? 0 : v[0] - '0';
      if (!old && !ow && w <= 4) fused[w] = got;
      if (ow) compare(rep, std::string(tag) + " ~w" + v[0], got, fused[w], 1e-6, 1e-6);
      unsetenv("KIMI_CUDA_STATE_KERNEL");
      unsetenv("KIMI_CUDA_STATE_WARPS");
      unsetenv("KIMI_CUDA_STATE_OWARPS");
      unsetenv("KIMI_CUDA_STATE_PREFETCH");
    }
  }
  if (quick) return;
  // A KIMI_CUDA_STATE_PREFETCH other than early or late is refused (paired walks read it).
  {
    const RecurrenceDims d{1, 64, 1, 64, 64, GateKind::kScalar, 0.125, 64};
    const Problem pb = as_type<__nv_bfloat16>(random_problem(d, true, 799));
    const ScopedEnv pairs("KIMI_CUDA_STATE_OWARPS", "1"), bad("KIMI_CUDA_STATE_PREFETCH", "soon");
    rep.check_true("state KIMI_CUDA_STATE_PREFETCH=soon refused", chunk_run_refused(pb, false));
  }
}

// The bf16 chunk backward with its F2 stage (states h_c and V') on the forward's tensor-core
// state kernel in store mode (default; V tiles of 1, 2, 4, 8 warps by KIMI_CUDA_STATE_WARPS, and
// 1, 2, 4 with partner warps storing h_c and V', KIMI_CUDA_STATE_OWARPS=fwd: every gradient equal
// in bits to the same width unpaired, "~wN"; "l" the same with KIMI_CUDA_STATE_PREFETCH=late)
// and on
// the WMMA TF32 walk it replaces (KIMI_CUDA_BWD_STATE_KERNEL=old): every gradient against the
// CPU oracle, and the new path against the old one ("new~old"). Odd shapes: T not a multiple
// of the chunk, V tails (a warp half past V, idle warps), K < the padded head size, one whole
// chunk, with and without h0 / dht, dh0 wanted or not. `quick` keeps two shapes.
void bwd_state_cases(Report& rep, bool quick) {
  const ChunkBwdCase cases[] = {
      {1, 77, 2, 128, 72, GateKind::kPerChannel, true, true},
      {2, 130, 3, 48, 40, GateKind::kScalar, true, false},
      {1, 200, 2, 96, 128, GateKind::kPerChannel, false, true},
      {2, 64, 2, 64, 24, GateKind::kNone, true, true},
      {1, 150, 2, 128, 96, GateKind::kPerChannel, true, true},
  };
  uint64_t seed = 900;
  int n = 0;
  for (const ChunkBwdCase& c : cases) {
    if (quick && ++n > 2) break;
    RecurrenceDims d{c.B, c.T, c.H, c.K, c.V, c.gate, 1.0 / std::sqrt(double(c.K)), 64};
    Problem p = random_problem(d, true, ++seed);
    if (!c.states) {
      p.h0.clear();
      p.dht.clear();
    }
    const Problem pb = as_type<__nv_bfloat16>(p);
    const Result ref = cpu_reference(pb, true);
    setenv("KIMI_CUDA_BWD_STATE_KERNEL", "old", 1);
    const Result old = cuda_run<__nv_bfloat16>(pb, Form::kChunk, true, c.want_dh0);
    unsetenv("KIMI_CUDA_BWD_STATE_KERNEL");
    char base[128];
    std::snprintf(base, sizeof base, "%s %s%s%s bf16", gate_name(c.gate), dims_str(d).c_str(),
                  c.states ? "" : " no h0/dht", c.want_dh0 ? "" : " no dh0");
    compare(rep, std::string("bwd state old ") + base, old, ref, kTolBf16, kTolBf16);
    Result unpaired[5];  // by warps a block (1, 2, 4)
    for (const char* variant : {"auto", "1", "2", "4", "8", "1o", "2o", "4o", "1l", "2l", "4l"}) {
      const std::string v = variant;
      const bool fixed = v != "auto", late = v.back() == 'l';
      const bool ow = fixed && (v.back() == 'o' || late);  // not "auto"'s o
      if (late) setenv("KIMI_CUDA_STATE_PREFETCH", "late", 1);
      // "fwd": partners in F2 only, so the gradients can equal the unpaired run's in bits (B1's
      // partners sum in another order: bwd_dh_cases checks them).
      if (fixed) {
        setenv("KIMI_CUDA_STATE_WARPS", v.substr(0, 1).c_str(), 1);
        setenv("KIMI_CUDA_STATE_OWARPS", ow ? "fwd" : "0", 1);
      }
      const Result got = cuda_run<__nv_bfloat16>(pb, Form::kChunk, true, c.want_dh0);
      unsetenv("KIMI_CUDA_STATE_WARPS");
      unsetenv("KIMI_CUDA_STATE_OWARPS");
      unsetenv("KIMI_CUDA_STATE_PREFETCH");
      const std::string tag = std::string("bwd state ") + (fixed ? "w" : "") + v + " " + base;
      compare(rep, tag, got, ref, kTolBf16, kTolBf16);
      if (!fixed) compare(rep, tag + " new~old", got, old, kTolBf16, kTolBf16);
      // The partner warps store the bf16 values the chain warps would have stored.
      const int w = fixed ? v[0] - '0' : 0;
      if (fixed && !ow && w <= 4) unpaired[w] = got;
      if (ow) compare(rep, tag + " ~w" + v[0], got, unpaired[w], 1e-6, 1e-6);
    }
  }
}

}  // namespace kimi::cuda_test
