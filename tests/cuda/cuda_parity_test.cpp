// CUDA parity tests (kimi_cuda_tests): every CUDA kernel of core/cuda against the CPU kernels
// (core/kernels/cpu, run in float64) on random inputs of odd sizes (T not a multiple of the
// chunk, K != V), and against the golden tensors of flash-linear-attention
// (linear_ops_small.safetensors), forward and backward of the recurrent and chunk forms. Every
// output, final state and gradient is compared by relative error per tensor; outputs are
// poisoned with NaN before each run. Tolerances: fp32
// kernels 1e-5 (outputs) / 1e-4 (gradients), TF32 chunk kernels 5e-3, bf16 2e-2 (golden/README).
// Usage: kimi_cuda_tests [--quick] [--state] [--bwd-state] [--bwd-dh] [--bwd-wy] [--intra]
// [--linear] [GOLDEN_DIR]
// (default:
// .gpu/golden, then tests/golden). --quick leaves out the large cases (for runs under
// compute-sanitizer); --state runs only the chunk forward's state-kernel cases
// (state_kernel_cases, cuda_parity_state.cpp), --bwd-state only the chunk backward's F2 cases
// (bwd_state_cases, cuda_parity_state.cpp), --linear only the linear recurrence's chunk cases,
// --bwd-dh only the chunk backward's B1 cases (bwd_dh_cases, cuda_parity_bwd_dh.cpp), --bwd-wy
// (or --bwd-gram) only its B3 / B4 cases (bwd_wy_gram_cases, cuda_parity_bwd_wy_gram.cpp), --intra
// only the KDA intra-kernel cases (intra_kernel_cases, cuda_parity_intra.cpp). Exit status
// 0 when every check passes or no GPU is present (then it says it skipped).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tests/cuda/recurrence_parity.h"

namespace kimi::cuda_test {

// The chunk backward on shapes the random cases leave out: padded head size 128 with K != V
// (both ways, V not a multiple of 16), one short chunk, T a multiple of the chunk, no h0 / dht
// (zero), dh0 not wanted; fp32 (TF32 products) and bf16, every gate kind.
void chunk_bwd_cases(Report& rep) {
  const ChunkBwdCase cases[] = {
      {1, 77, 2, 128, 72, GateKind::kPerChannel, true, true},
      {2, 128, 2, 96, 128, GateKind::kScalar, true, false},
      {2, 37, 3, 64, 24, GateKind::kNone, false, true},
      {1, 192, 2, 100, 36, GateKind::kPerChannel, false, false},
      {2, 70, 2, 32, 128, GateKind::kScalar, false, true},
  };
  uint64_t seed = 300;
  for (bool delta : {true, false})
    for (const ChunkBwdCase& c : cases) {
      RecurrenceDims d{c.B, c.T, c.H, c.K, c.V, c.gate, 1.0 / std::sqrt(double(c.K)), 64};
      Problem p = random_problem(d, delta, ++seed);
      if (!c.states) {
        p.h0.clear();
        p.dht.clear();
      }
      char tag[128];
      std::snprintf(tag, sizeof tag, "%schunk bwd %s %s%s%s", delta ? "" : "linear ",
                    gate_name(c.gate), dims_str(d).c_str(), c.states ? "" : " no h0/dht",
                    c.want_dh0 ? "" : " no dh0");
      const Problem pf = as_type<float>(p);
      compare(rep, std::string(tag) + " f32", cuda_run<float>(pf, Form::kChunk, true, c.want_dh0),
              cpu_reference(pf, true), kTolTf32, kTolTf32);
      const Problem pb = as_type<__nv_bfloat16>(p);
      compare(rep, std::string(tag) + " bf16",
              cuda_run<__nv_bfloat16>(pb, Form::kChunk, true, c.want_dh0), cpu_reference(pb, true),
              kTolBf16, kTolBf16);
    }
}

// The chunkwise linear recurrence on shapes the loop below leaves out: the scan kernel's 64-
// and 32-wide V tiles (many heads), strong per-channel and scalar decays, Mamba2-like scale 1;
// and for bf16 the tensor-core path (the delta rule's intra kernel and state walk without their
// delta-rule parts, the default) against the CPU and against the scan + output kernels it
// replaces (KIMI_CUDA_LR_KERNEL=old, "new~old"; "new ran": the two outputs differ in bits, so
// the default did not fall back), on tails: T not a multiple of the chunk, one chunk, one token
// past a chunk, K != V both ways, K < the padded head size, V past a warp's 16 columns, no h0.
// Each path: "two" (KIMI_CUDA_LR_FUSED=0: the intra kernel + the walk), "fused" (=1: the one-kernel
// walk of linear_recurrence_walk.cu, scalar gate or none; "fused ran": with a scalar gate its
// output differs in bits from "two", whose A_qk is built another way) and "auto" (the default
// rule); on the first four shapes (D 64 and 128, one chunk and several, every gate kind) each
// with the walks' V-tile widths (KIMI_CUDA_STATE_WARPS = 1, 2, 4, 8: idle warps past V; forward
// and backward, whose F2 and B1 walks take the same widths). The backward of a scalar gate or
// none runs on the delta rule's tensor-core stages (KIMI_CUDA_LR_BWD_KERNEL, "bwd new ran").
// `quick` keeps the first two shapes, a scalar-gate one of three chunks among them, so the
// sanitizers see the fused walk's stages and barriers turn over (kimi_cuda_tests --linear
// --quick).
void linear_chunk_cases(Report& rep, bool quick) {
  struct Case {
    int64_t B, T, H, K, V;
    GateKind gate;
    double decay, scale;
    bool h0;
  };
  const Case cases[] = {{2, 130, 3, 48, 40, GateKind::kScalar, 1.0, 0.0, true},
                        {1, 77, 2, 96, 72, GateKind::kPerChannel, 1.0, 0.0, false},
                        {2, 40, 1, 32, 40, GateKind::kNone, 1.0, 0.0, true},
                        {1, 257, 2, 128, 24, GateKind::kScalar, 10.0, 1.0, true},
                        {2, 64, 2, 64, 128, GateKind::kScalar, 1.0, 1.0, false},
                        {4, 100, 40, 128, 128, GateKind::kScalar, 1.0, 0.0, true},
                        {1, 150, 40, 128, 96, GateKind::kPerChannel, 1.0, 0.0, true},
                        {2, 200, 3, 128, 128, GateKind::kPerChannel, 10.0, 0.0, true},
                        {2, 129, 3, 64, 64, GateKind::kScalar, 1.0, 1.0, true}};
  uint64_t seed = 500;
  int n = 0;
  for (const Case& c : cases) {
    if (quick && n >= 2) break;
    const bool tiles = n++ < 4;
    RecurrenceDims d{
        c.B, c.T, c.H, c.K, c.V, c.gate, c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(c.K)), 64};
    Problem p = random_problem(d, false, ++seed, c.decay);
    if (!c.h0) p.h0.clear();
    char buf[128];
    std::snprintf(buf, sizeof buf, "linear chunk %s %s%s%s", gate_name(c.gate), dims_str(d).c_str(),
                  c.decay > 1 ? " strong" : "", c.h0 ? "" : " no h0");
    const std::string tag = buf;
    const Problem pf = as_type<float>(p);
    compare(rep, tag + " f32", cuda_run<float>(pf, Form::kChunk, true), cpu_reference(pf, true),
            kTolTf32, kTolTf32);
    const Problem pb = as_type<__nv_bfloat16>(p);
    const Result ref = cpu_reference(pb, true);
    Result old;
    {
      const ScopedEnv env("KIMI_CUDA_LR_KERNEL", "old");
      old = cuda_run<__nv_bfloat16>(pb, Form::kChunk, true);
    }
    compare(rep, tag + " bf16 old", old, ref, kTolBf16, kTolBf16);
    // The backward on tensor cores (scalar gate or none; lr_bwd_mma) against the fp32 scans +
    // grad kernel on the same (tensor-core) intra kernel, KIMI_CUDA_LR_BWD_KERNEL=old alone:
    // "bwd new~old" within the bf16 tolerances, and "bwd new ran": dq differs in bits, so the
    // default did not fall back.
    if (c.gate != GateKind::kPerChannel) {
      Result old_bwd;
      {
        const ScopedEnv env("KIMI_CUDA_LR_BWD_KERNEL", "old");
        old_bwd = cuda_run<__nv_bfloat16>(pb, Form::kChunk, true);
      }
      const Result got = cuda_run<__nv_bfloat16>(pb, Form::kChunk, true);
      compare(rep, tag + " bwd old", old_bwd, ref, kTolBf16, kTolBf16);
      compare(rep, tag + " bwd new~old", got, old_bwd, kTolBf16, kTolBf16);
      rep.check_true(tag + " bwd new ran", got.dq != old_bwd.dq);
    }
    // "two": the intra kernel + the walk (KIMI_CUDA_LR_FUSED=0); "fused": the one-kernel walk
    // (=1; scalar gate or none); "auto": the default rule between them.
    Result two;
    for (const char* path : {"auto", "two", "fused"}) {
      const std::string v = path;
      if (v == "fused" && c.gate == GateKind::kPerChannel) continue;
      std::optional<ScopedEnv> env;  // "auto": the environment's choice
      if (v != "auto") env.emplace("KIMI_CUDA_LR_FUSED", v == "two" ? "0" : "1");
      const Result got = cuda_run<__nv_bfloat16>(pb, Form::kChunk, true);
      const std::string t = tag + " bf16 " + v;
      compare(rep, t, got, ref, kTolBf16, kTolBf16);
      compare(rep, t + " new~old", got, old, kTolBf16, kTolBf16);
      rep.check_true(t + " new ran", got.o != old.o);
      if (v == "two") two = got;
      if (v == "fused" && c.gate == GateKind::kScalar)
        rep.check_true(t + " fused ran", got.o != two.o);
      for (const char* w : {"1", "2", "4", "8"}) {
        if (!tiles) break;
        const ScopedEnv ew("KIMI_CUDA_STATE_WARPS", w);
        compare(rep, t + " w" + w, cuda_run<__nv_bfloat16>(pb, Form::kChunk, true), ref, kTolBf16,
                kTolBf16);
      }
    }
  }
}

// A KIMI_CUDA_LR_BWD_KERNEL other than old or new is refused, never taken as either.
void linear_bwd_env_refused(Report& rep) {
  const RecurrenceDims d{1, 64, 1, 64, 64, GateKind::kScalar, 0.125, 64};
  const Problem pb = as_type<__nv_bfloat16>(random_problem(d, false, 1598, 1.0));
  const ScopedEnv bad("KIMI_CUDA_LR_BWD_KERNEL", "fast");
  rep.check_true("linear bwd KIMI_CUDA_LR_BWD_KERNEL=fast refused", chunk_run_refused(pb, true));
}

// Random problems of odd sizes: every gate kind, delta rule and linear recurrence.
void random_cases(Report& rep, bool quick) {
  uint64_t seed = 100;
  for (GateKind gate : {GateKind::kNone, GateKind::kScalar, GateKind::kPerChannel}) {
    for (bool delta : {true, false}) {
      RecurrenceDims d{2, 130, 3, 48, 40, gate, 1.0 / std::sqrt(48.0), 64};
      const Problem p = random_problem(d, delta, ++seed);
      const std::string tag = std::string(delta ? "delta " : "linear ") + gate_name(gate) + " ";
      {
        const Problem pf = as_type<float>(p);
        const Result ref = cpu_reference(pf, true);
        compare(rep, tag + "recurrent f32", cuda_run<float>(pf, Form::kRecurrent, true), ref,
                kTolOut, kTolGrad);
        compare(rep, tag + "chunk f32 (tf32)", cuda_run<float>(pf, Form::kChunk, true), ref,
                kTolTf32, kTolTf32);
      }
      {
        const Problem pb = as_type<__nv_bfloat16>(p);
        const Result ref = cpu_reference(pb, true);
        if (delta)
          compare(rep, tag + "recurrent bf16", cuda_run<__nv_bfloat16>(pb, Form::kRecurrent, true),
                  ref, kTolBf16, kTolBf16);
        compare(rep, tag + "chunk bf16", cuda_run<__nv_bfloat16>(pb, Form::kChunk, true), ref,
                kTolBf16, kTolBf16);
      }
    }
  }
  state_kernel_cases(rep, quick);
  if (quick) return;
  // Head size 128 (four lanes per state column; chunk tiles of the full K), strong decays
  // (exp differences over a chunk reach e^-600), and a backward with the checkpoint interval
  // not dividing T.
  {
    RecurrenceDims d{2, 200, 3, 128, 128, GateKind::kPerChannel, 1.0 / std::sqrt(128.0), 48};
    const Problem pf = as_type<float>(random_problem(d, true, 7));
    const Result ref = cpu_reference(pf, true);
    compare(rep, "kda K128 V128 recurrent f32", cuda_run<float>(pf, Form::kRecurrent, true), ref,
            kTolOut, kTolGrad);
    compare(rep, "kda K128 V128 chunk f32", cuda_run<float>(pf, Form::kChunk, true), ref, kTolTf32,
            kTolTf32);
    const Problem pb = as_type<__nv_bfloat16>(random_problem(d, true, 7));
    compare(rep, "kda K128 V128 chunk bf16", cuda_run<__nv_bfloat16>(pb, Form::kChunk, true),
            cpu_reference(pb, true), kTolBf16, kTolBf16);
    const Problem ps = as_type<float>(random_problem(d, true, 8, 10.0));
    const Result refs = cpu_reference(ps, true);
    compare(rep, "kda K128 strong decay chunk f32", cuda_run<float>(ps, Form::kChunk, true), refs,
            kTolTf32, kTolTf32);
    compare(rep, "kda K128 strong decay recurrent f32",
            cuda_run<float>(ps, Form::kRecurrent, false), refs, kTolOut, kTolOut);
  }
  // Enough heads for the 64-wide V tiles of the chunk state kernel.
  {
    RecurrenceDims d{4, 100, 40, 128, 128, GateKind::kPerChannel, 1.0 / std::sqrt(128.0), 64};
    const Problem pf = as_type<float>(random_problem(d, true, 9));
    compare(rep, "kda B4 H40 (64-wide tiles) chunk f32", cuda_run<float>(pf, Form::kChunk, true),
            cpu_reference(pf, true), kTolTf32, kTolTf32);
    const Problem pb = as_type<__nv_bfloat16>(random_problem(d, true, 9));
    compare(rep, "kda B4 H40 (64-wide tiles) chunk bf16",
            cuda_run<__nv_bfloat16>(pb, Form::kChunk, true), cpu_reference(pb, true), kTolBf16,
            kTolBf16);
  }
  linear_chunk_cases(rep, false);
  linear_bwd_env_refused(rep);
  chunk_bwd_cases(rep);
}

}  // namespace kimi::cuda_test

using namespace kimi::cuda_test;

int main(int argc, char** argv) {
  if (!kc::device_present()) {
    std::printf("SKIP: no CUDA device present (cuda_available() is false); nothing was run\n");
    return 0;
  }
  bool quick = false, state_only = false, bwd_state_only = false, intra_only = false,
       bwd_dh_only = false, bwd_wy_only = false, linear_only = false;
  std::string golden;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick")
      quick = true;
    else if (std::string(argv[i]) == "--state")
      state_only = true;
    else if (std::string(argv[i]) == "--bwd-state")
      bwd_state_only = true;
    else if (std::string(argv[i]) == "--intra")
      intra_only = true;
    else if (std::string(argv[i]) == "--bwd-dh")
      bwd_dh_only = true;
    else if (std::string(argv[i]) == "--bwd-wy" || std::string(argv[i]) == "--bwd-gram")
      bwd_wy_only = true;
    else if (std::string(argv[i]) == "--linear")
      linear_only = true;
    else
      golden = argv[i];
  }
  // Staged copy (tools/gpu_check.sh), then the repository's own tests/golden when run from the
  // repository root on the GPU machine, then the build machine's path.
  if (golden.empty())
    golden = std::filesystem::exists(".gpu/golden")    ? ".gpu/golden"
             : std::filesystem::exists("tests/golden") ? "tests/golden"
                                                       : KIMI_GOLDEN_DIR;
  cudaDeviceProp prop{};
  KIMI_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  std::printf("%-44s %-6s %10s  %13s\n", "case", "tensor", "rel err", "");
  Report rep;
  const std::pair<const char*, std::function<void()>> groups[] = {
      {"memory", [&] { memory_cases(rep); }},
      {"golden", [&] { golden_cases(rep, golden); }},
      {"random", [&] { random_cases(rep, quick); }},
      {"decode", [&] { decode_cases(rep); }},
      {"bwd state", [&] { bwd_state_cases(rep, quick); }},
      {"intra", [&] { intra_kernel_cases(rep, quick); }},
      {"bwd dh", [&] { bwd_dh_cases(rep, quick); }},
      {"bwd wy/gram", [&] { bwd_wy_gram_cases(rep, quick); }},
  };
  // One group's exception is one FAIL; the other groups still run.
  auto run = [&](const char* name, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      ++rep.fails;
      std::printf("FAIL %s: exception: %s\n", name, e.what());
    }
  };
  if (!(state_only || bwd_state_only || intra_only || bwd_dh_only || bwd_wy_only || linear_only))
    for (const auto& [name, fn] : groups) run(name, fn);
  if (state_only) run("state", [&] { state_kernel_cases(rep, quick); });
  if (bwd_state_only) run("bwd state", [&] { bwd_state_cases(rep, quick); });
  if (intra_only) run("intra", [&] { intra_kernel_cases(rep, quick); });
  if (bwd_dh_only) run("bwd dh", [&] { bwd_dh_cases(rep, quick); });
  if (bwd_wy_only) run("bwd wy/gram", [&] { bwd_wy_gram_cases(rep, quick); });
  if (linear_only)
    run("linear", [&] {
      linear_chunk_cases(rep, quick);
      linear_bwd_env_refused(rep);
    });
  std::printf("%d checks, %d failed\n", rep.checks, rep.fails);
  return rep.fails ? 1 : 0;
}
