// Parity cases of the chunk backward's B3 (UT / WY backward, delta_rule_chunk_bwd_wy.cu; new: A_kk
// and T handed over by F1's tensor-core KDA intra kernel where it runs, else recomputed) and B4
// (Gram backward, delta_rule_chunk_bwd_gram.cu) with their per-chunk products on bf16 mma.sync
// (bwd_mma.cuh) against the WMMA TF32 kernels they replace (force_chunk_bwd_{wy,gram}_kernel(
// kOld), what KIMI_CUDA_BWD_WY_KERNEL=old / KIMI_CUDA_BWD_GRAM_KERNEL=old select) and against the
// CPU oracle in float64 (the recurrent backward): every gradient (dq, dk, dv, dg, dbeta, dh0) for
// old/old, new B3 alone, new B4 alone and new/new, and new~old for each. bf16 inputs only (fp32
// keeps the TF32 kernels). The chunk is 64 (the only chunk the kernels are compiled for).
// Odd shapes: T not a multiple of the chunk (100, 257 = four chunks and one token, 77, 1), one
// whole chunk, K != V both ways, padded head sizes 64 and 128, K and V not multiples of 8 (no
// register prefetch: the load_rows path), every gate kind, strong (10 per token) and weak (0.05)
// decays, 1-3 heads and batches, with and without h0 / dht; B4 with 32 channels per block as well
// (KIMI_CUDA_GRAM_KS=32: several column blocks, the last one partly past K). Scalar gates and
// none run B4's row-gate products (one exp per row pair, plain GEMMs): by default one block per
// chunk-head (KIMI_CUDA_GRAM_ROW=block, dg finished in the block), checked against the previous
// row kernel (split: a block per 32 channels, dg by scalar_dg_kernel) and the per-channel kernel
// (off), each of those against the reference too. `quick` keeps five shapes, three of them
// row-gated (compute-sanitizer: kimi_cuda_tests --bwd-wy --quick). B2 on bf16 mma.sync is
// checked against its WMMA TF32 kernel (KIMI_CUDA_BWD_DHV_KERNEL=old) on every case. Tolerances:
// the suite's bf16 2e-2 against the oracle (old kernels 3-6e-3 there); new~old: the products'
// operands rounded to bf16 (2^-9) instead of TF32 (2^-11), ~2e-3 relative per product term summed
// in fp32: 1-5e-3 expected, checked against 1e-2.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "tests/cuda/recurrence_parity.h"

namespace kimi::cuda_test {

namespace {

constexpr double kTolNewOld = 1e-2;

// B3 and B4 forced for the scope, then back to the environment's choice.
class WyGramKernels {
 public:
  WyGramKernels(bool wy_new, bool gram_new) {
    kc::force_chunk_bwd_wy_kernel(wy_new ? kc::ChunkBwdDhKernel::kNew : kc::ChunkBwdDhKernel::kOld);
    kc::force_chunk_bwd_gram_kernel(gram_new ? kc::ChunkBwdDhKernel::kNew
                                             : kc::ChunkBwdDhKernel::kOld);
  }
  ~WyGramKernels() {
    kc::force_chunk_bwd_wy_kernel(kc::ChunkBwdDhKernel::kEnv);
    kc::force_chunk_bwd_gram_kernel(kc::ChunkBwdDhKernel::kEnv);
  }
};

}  // namespace

void bwd_wy_gram_cases(Report& rep, bool quick) {
  struct Case {
    int64_t B, T, H, K, V;
    GateKind gate;
    double decay;
    bool states, want_dh0;
    bool quick = false;  // one of the cases compute-sanitizer runs
  };
  const Case cases[] = {
      {1, 100, 2, 96, 72, GateKind::kPerChannel, 1.0, true, true, true},    // K > V, padded 128
      {2, 257, 3, 64, 128, GateKind::kPerChannel, 1.0, false, true, true},  // K < V, 1-token chunk
      {1, 200, 2, 128, 128, GateKind::kPerChannel, 10.0, true, true},       // strong decays
      {2, 130, 3, 48, 40, GateKind::kScalar, 0.05, true, false},            // weak, padded head 64
      {2, 64, 2, 64, 24, GateKind::kNone, 1.0, true, true},                 // one whole chunk
      {1, 77, 2, 100, 36, GateKind::kPerChannel, 1.0, true, true},  // K, V not multiples of 8
      {2, 192, 1, 128, 64, GateKind::kScalar, 1.0, false, false},   // T a multiple of 64
      {2, 1, 2, 64, 64, GateKind::kPerChannel, 1.0, true, true},    // one token
      // The row-gate B4 (scalar gates and none: whole-row decays, plain tensor-core GEMMs).
      {1, 200, 2, 128, 128, GateKind::kScalar, 10.0, true, true, true},  // strong, K = 128
      {2, 150, 2, 128, 96, GateKind::kNone, 1.0, true, true, true},      // K > V, 22-token chunk
      {1, 65, 3, 80, 128, GateKind::kScalar, 1.0, false, true},        // padded 128, 1-token chunk
      {2, 130, 2, 64, 64, GateKind::kScalar, 10.0, true, true, true},  // K = 64, 2-token chunk
      {1, 100, 2, 64, 40, GateKind::kNone, 1.0, false, true},          // K = 64 > V
  };
  uint64_t seed = 1500;
  for (const Case& c : cases) {
    if (quick && !c.quick) continue;
    RecurrenceDims d{c.B, c.T, c.H, c.K, c.V, c.gate, 1.0 / std::sqrt(double(c.K)), 64};
    Problem p = random_problem(d, true, ++seed, c.decay);
    if (!c.states) {
      p.h0.clear();
      p.dht.clear();
    }
    const Problem pb = as_type<__nv_bfloat16>(p);
    char base[160];
    std::snprintf(base, sizeof base, "%s %s%s%s%s", gate_name(c.gate), dims_str(d).c_str(),
                  c.decay != 1.0 ? (c.decay > 1 ? " strong" : " weak") : "",
                  c.states ? "" : " no h0/dht", c.want_dh0 ? "" : " no dh0");
    const Result ref = cpu_reference(pb, true);
    auto run = [&](bool wy_new, bool gram_new) {
      const WyGramKernels k(wy_new, gram_new);
      return cuda_run<__nv_bfloat16>(pb, Form::kChunk, true, c.want_dh0);
    };
    const Result old = run(false, false);
    compare(rep, std::string("bwd wy/gram old/old ") + base, old, ref, kTolBf16, kTolBf16);
    const struct {
      bool wy, gram;
      const char* name;
    } combos[] = {{true, false, "new/old"}, {false, true, "old/new"}, {true, true, "new/new"}};
    for (const auto& m : combos) {
      if (quick && !(m.wy && m.gram)) continue;
      const Result got = run(m.wy, m.gram);
      const std::string tag = std::string("bwd wy/gram ") + m.name + " " + base;
      compare(rep, tag, got, ref, kTolBf16, kTolBf16);
      compare(rep, tag + " ~old", got, old, kTolNewOld, kTolNewOld);
    }
    // B4 with 64 channels per block, one block per SM (KIMI_CUDA_GRAM_KS=64; the default new/new
    // rows run 32 on bf16 rows of whole vectors, and other shapes 64 either way);
    // B3 recomputing A_kk and T itself (KIMI_CUDA_BWD_WY_RECOMPUTE=1) where F1 would hand them
    // over (KDA, bf16 rows of whole vectors: the default new/new rows take F1's).
    for (const char* var : {"KIMI_CUDA_GRAM_KS", "KIMI_CUDA_BWD_WY_RECOMPUTE"}) {
      const bool ks = std::string(var) == "KIMI_CUDA_GRAM_KS";
      setenv(var, ks ? "64" : "1", 1);
      const Result got = run(true, true);
      unsetenv(var);
      const std::string tag =
          std::string("bwd wy/gram new/new ") + (ks ? "ks64 " : "recompute ") + base;
      compare(rep, tag, got, ref, kTolBf16, kTolBf16);
      compare(rep, tag + " ~old", got, old, kTolNewOld, kTolNewOld);
    }
    // B2 on bf16 mma.sync (the default) against its WMMA TF32 kernel: the same bf16 operands,
    // another order of the fp32 sums.
    {
      kc::force_chunk_bwd_dhv_kernel(kc::ChunkBwdDhKernel::kOld);
      const Result dhv_old = run(true, true);
      kc::force_chunk_bwd_dhv_kernel(kc::ChunkBwdDhKernel::kEnv);
      compare(rep, std::string("bwd dhv old new/new ") + base, dhv_old, ref, kTolBf16, kTolBf16);
      compare(rep, std::string("bwd dhv new~old ") + base, run(true, true), dhv_old, kTolNewOld,
              kTolNewOld);
    }
    // Scalar gates and none: the block row kernel (the default) against the previous row kernel
    // (KIMI_CUDA_GRAM_ROW=split) and the per-channel kernel (off), all new.
    if (c.gate != GateKind::kPerChannel) {
      const Result block = run(true, true);
      for (const char* mode : {"split", "off"}) {
        setenv("KIMI_CUDA_GRAM_ROW", mode, 1);
        const Result other = run(true, true);
        unsetenv("KIMI_CUDA_GRAM_ROW");
        const std::string name = std::string(mode) == "off" ? "per-channel" : mode;
        compare(rep, std::string("bwd wy/gram new/new gram-row-") + mode + " " + base, other, ref,
                kTolBf16, kTolBf16);
        compare(rep, "bwd wy/gram new/new row-block~" + name + " " + base, block, other, kTolNewOld,
                kTolNewOld);
      }
    }
  }
  // A KIMI_CUDA_GRAM_ROW other than block, split or off is refused, never taken as one of them.
  {
    const RecurrenceDims d{1, 64, 1, 64, 64, GateKind::kScalar, 0.125, 64};
    const Problem pb = as_type<__nv_bfloat16>(random_problem(d, true, 1599, 1.0));
    const ScopedEnv bad("KIMI_CUDA_GRAM_ROW", "on");
    rep.check_true("bwd gram KIMI_CUDA_GRAM_ROW=on refused", chunk_run_refused(pb, true));
  }
}

}  // namespace kimi::cuda_test
