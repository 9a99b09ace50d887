// kimi_cuda_bench's chunk backward tables, stage by stage: F2 / B1 old and new (--bwd-state),
// B2 / B3 / B4 old and new (--bwd-wy).
#include <cstdio>
#include <string>

#include "tests/cuda/bench_common.h"

namespace kimi::cuda_bench {
namespace {

// The chunk backward of one shape timed stage by stage (CUDA events, medians over `reps` after
// two warm-up runs): the whole backward and its stages F1, F2 h, B1 dh, B2, B3 ut, B4. The
// kernel variants are whatever the caller forced or set in the environment.
struct BwdStages {
  double bwd = 0, st[6] = {};
};
class BwdStageTimer {
 public:
  using T = __nv_bfloat16;
  explicit BwdStageTimer(const ChunkInputs& in)
      : in_(in),
        dout_(uniform(in.NT * in.H * in.V, 6, -1, 1)),
        gq_(in.NT * in.H * in.K),
        gk_(in.NT * in.H * in.K),
        gv_(in.NT * in.H * in.V),
        gg_(in.NT * in.H * in.K),
        gb_(in.NT * in.H) {
    for (int i = 0; i < 7; ++i) {
      KIMI_CUDA_CHECK(cudaEventCreate(&be_.e[i]));
    }
  }
  ~BwdStageTimer() {
    for (cudaEvent_t e : be_.e) cudaEventDestroy(e);
  }
  BwdStageTimer(const BwdStageTimer&) = delete;
  BwdStageTimer& operator=(const BwdStageTimer&) = delete;

  // `what` names the variant column (e.g. "F2/B1").
  static void print_header(const char* what) {
    std::printf("%8s %6s %6s %7s %9s | %6s %6s %6s %6s %6s %6s\n", "T", "B", "gate", what, "bwd ms",
                "F1", "F2 h", "B1 dh", "B2", "B3 ut", "B4");
  }
  BwdStages time(int gi, int64_t seq, int reps, const char* variant) {
    const int64_t B = in_.NT / seq;
    RecurrenceDims d{B, seq, in_.H, in_.K, in_.V, gates[gi], 1.0 / std::sqrt(double(in_.K)), 64};
    auto step = [&](const kc::ChunkBwdEvents* e) {
      kc::delta_rule_chunk_bwd<T>(d, in_.dq.ptr(), in_.dk.ptr(), in_.dv.ptr(), in_.gate(gi),
                                  in_.dbeta.ptr(), nullptr, dout_.ptr(), nullptr, gq_.ptr(),
                                  gk_.ptr(), gv_.ptr(), gg_.ptr(), gb_.ptr(), nullptr, kc::stream(),
                                  e);
    };
    for (int i = 0; i < 2; ++i) step(nullptr);
    std::vector<double> bwd, st[6];
    for (int i = 0; i < reps; ++i) {
      step(&be_);
      KIMI_CUDA_CHECK(cudaEventSynchronize(be_.e[6]));
      float m = 0;
      KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, be_.e[0], be_.e[6]));
      bwd.push_back(m);
      for (int k = 0; k < 6; ++k) {
        KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, be_.e[k], be_.e[k + 1]));
        st[k].push_back(m);
      }
    }
    BwdStages out;
    out.bwd = median(bwd);
    for (int k = 0; k < 6; ++k) out.st[k] = median(st[k]);
    std::printf("%8ld %6ld %6s %7s %9.3f | %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f\n", long(seq),
                long(B), gate_names[gi], variant, out.bwd, out.st[0], out.st[1], out.st[2],
                out.st[3], out.st[4], out.st[5]);
    return out;
  }

 private:
  const ChunkInputs& in_;
  Dev<T> dout_, gq_, gk_, gv_, gg_, gb_;
  kc::ChunkBwdEvents be_{};
};

}  // namespace

// The chunk backward's stages (CUDA events, medians) with F2 on the WMMA TF32 walk
// (KIMI_CUDA_BWD_STATE_KERNEL=old) or on the tensor-core state kernel in store mode, and B1 on
// the WMMA TF32 walk (force_chunk_bwd_dh_kernel(kOld), as KIMI_CUDA_BWD_DH_KERNEL=old) or on
// the tensor-core dh walk: rows old/old, new/old, new/new (F2/B1; w2/new, w2p/new, w4p/new:
// V tiles of 2 or 4 warps, p with partner warps), then B1 old and new side by
// side with the backward totals. KDA and GDN, bf16, H=16 K=V=128, B*T=65,536, training shape
// (no h0 / dht / dh0).
void bench_bwd_state(int reps) {
  ChunkInputs in;
  BwdStageTimer timer(in);
  std::printf(
      "\nchunk backward stages, bf16, H=16 K=V=128, B*T=65,536 tokens (ms; F2/B1 old or new)\n");
  BwdStageTimer::print_header("F2/B1");
  struct Pair {
    int gi;
    int64_t seq;
    double b1_old, bwd_old, b1_new, bwd_new;
  };
  std::vector<Pair> pairs;
  for (int gi = 0; gi < 2; ++gi)
    for (int64_t seq : {2048, 8192, 32768}) {
      Pair pr{gi, seq, 0, 0, 0, 0};
      // F2/B1 kernels; then new/new with V tiles of 2 warps without and with partner warps
      // (KIMI_CUDA_STATE_WARPS / KIMI_CUDA_STATE_OWARPS), and 4 warps with partners (F2 only:
      // B1 pairs at most 2).
      for (const char* variant :
           {"old/old", "new/old", "new/new", "w2/new", "w2p/new", "w4p/new"}) {
        const std::string v = variant;
        const bool f2_old = v.rfind("old/", 0) == 0,
                   b1_old = v.size() > 4 && v.substr(v.size() - 3) == "old";
        if (f2_old) setenv("KIMI_CUDA_BWD_STATE_KERNEL", "old", 1);
        if (v[0] == 'w') {
          setenv("KIMI_CUDA_STATE_WARPS", v.substr(1, 1).c_str(), 1);
          setenv("KIMI_CUDA_STATE_OWARPS", v[2] == 'p' ? "1" : "0", 1);
        }
        kc::force_chunk_bwd_dh_kernel(b1_old ? kc::ChunkBwdDhKernel::kOld
                                             : kc::ChunkBwdDhKernel::kNew);
        const BwdStages t = timer.time(gi, seq, reps, variant);
        unsetenv("KIMI_CUDA_BWD_STATE_KERNEL");
        unsetenv("KIMI_CUDA_STATE_OWARPS");
        unsetenv("KIMI_CUDA_STATE_WARPS");
        kc::force_chunk_bwd_dh_kernel(kc::ChunkBwdDhKernel::kEnv);
        if (!f2_old && b1_old) pr.b1_old = t.st[2], pr.bwd_old = t.bwd;
        if (v == "new/new") pr.b1_new = t.st[2], pr.bwd_new = t.bwd;
      }
      pairs.push_back(pr);
    }
  std::printf("\nB1 dh walk old vs new (F2 new in both), same shape (ms)\n");
  std::printf("%8s %6s | %9s %9s %7s | %11s %11s\n", "T", "gate", "B1 old", "B1 new", "ratio",
              "bwd B1 old", "bwd B1 new");
  for (const Pair& pr : pairs)
    std::printf("%8ld %6s | %9.3f %9.3f %6.1fx | %11.3f %11.3f\n", long(pr.seq), gate_names[pr.gi],
                pr.b1_old, pr.b1_new, pr.b1_new > 0 ? pr.b1_old / pr.b1_new : 0.0, pr.bwd_old,
                pr.bwd_new);
}

// The chunk backward's stages (CUDA events, medians) with B3 (UT backward) and B4 (Gram
// backward) on WMMA TF32 (force_chunk_bwd_{wy,gram}_kernel(kOld), as KIMI_CUDA_BWD_WY_KERNEL=old
// / KIMI_CUDA_BWD_GRAM_KERNEL=old) or on bf16 mma.sync: rows old/old, new/old, old/new, new/new
// (B3/B4; F2 and B1 as the environment picks), new/n64 (B4 with 64 channels per block, one
// block per SM: KIMI_CUDA_GRAM_KS=64; new/new runs 32) and rec/new (B3 recomputing A_kk and T
// instead of taking F1's: KIMI_CUDA_BWD_WY_RECOMPUTE=1), new/ pc (GDN: new B4 per channel
// instead of its row-gate products: KIMI_CUDA_GRAM_ROW=off), new/spl (GDN, DeltaNet: the
// previous row kernel, a block per 32 channels and scalar_dg_kernel: KIMI_CUDA_GRAM_ROW=split;
// new/new runs one block per chunk-head), then B3 and B4 old and new side by side. KDA, GDN and
// DeltaNet, bf16, H=16 K=V=128, B*T=65,536, training shape (no h0 / dht / dh0).
void bench_bwd_wy_gram(int reps) {
  ChunkInputs in;
  BwdStageTimer timer(in);
  std::printf(
      "\nchunk backward stages, bf16, H=16 K=V=128, B*T=65,536 tokens (ms; B3/B4 old or new)\n");
  BwdStageTimer::print_header("B3/B4");
  struct Row {
    int gi;
    int64_t seq;
    double b3[2], b4[2], bwd[2];  // [old, new]
    double b4_64;                 // new B4, 64 channels per block (KIMI_CUDA_GRAM_KS=64)
    double b3_rec;                // new B3 recomputing A_kk and T (KIMI_CUDA_BWD_WY_RECOMPUTE=1)
    double b4_pc;                 // new B4 per channel for GDN / DeltaNet (KIMI_CUDA_GRAM_ROW=off)
    double b4_spl;  // the previous row B4, a block per 32 channels (KIMI_CUDA_GRAM_ROW=split)
    double b2[2];   // B2 [WMMA TF32 (KIMI_CUDA_BWD_DHV_KERNEL=old), bf16 mma], new/new
  };
  std::vector<Row> rows;
  auto pick = [](bool is_new) {
    return is_new ? kc::ChunkBwdDhKernel::kNew : kc::ChunkBwdDhKernel::kOld;
  };
  for (int gi = 0; gi < 3; ++gi)
    for (int64_t seq : {2048, 8192, 32768}) {
      Row row{gi, seq, {0, 0}, {0, 0}, {0, 0}, 0, 0, 0, 0, {0, 0}};
      for (const char* variant : {"old/old", "new/old", "old/new", "new/new", "new/n64", "rec/new",
                                  "new/ pc", "new/spl", "b2o/new"}) {
        const bool pc = std::strcmp(variant + 4, " pc") == 0;
        const bool spl = std::strcmp(variant + 4, "spl") == 0;
        if ((pc || spl) && gi == 0) continue;  // KDA's gate is per channel either way
        const bool b2old = std::strncmp(variant, "b2o", 3) == 0;
        if (b2old) kc::force_chunk_bwd_dhv_kernel(kc::ChunkBwdDhKernel::kOld);
        if (pc || spl) setenv("KIMI_CUDA_GRAM_ROW", pc ? "off" : "split", 1);
        const bool b3_new = std::strncmp(variant, "old", 3) != 0;
        const bool rec = std::strncmp(variant, "rec", 3) == 0;
        if (rec) setenv("KIMI_CUDA_BWD_WY_RECOMPUTE", "1", 1);
        const bool b4_new = std::strcmp(variant + 4, "old") != 0;
        const bool ks64 = std::strcmp(variant + 4, "n64") == 0;
        if (ks64) setenv("KIMI_CUDA_GRAM_KS", "64", 1);
        kc::force_chunk_bwd_wy_kernel(pick(b3_new));
        kc::force_chunk_bwd_gram_kernel(pick(b4_new));
        const BwdStages t = timer.time(gi, seq, reps, variant);
        kc::force_chunk_bwd_wy_kernel(kc::ChunkBwdDhKernel::kEnv);
        kc::force_chunk_bwd_gram_kernel(kc::ChunkBwdDhKernel::kEnv);
        unsetenv("KIMI_CUDA_GRAM_KS");
        unsetenv("KIMI_CUDA_BWD_WY_RECOMPUTE");
        unsetenv("KIMI_CUDA_GRAM_ROW");
        kc::force_chunk_bwd_dhv_kernel(kc::ChunkBwdDhKernel::kEnv);
        if (b2old) row.b2[0] = t.st[3];
        if (b2old) continue;
        if (b3_new && b4_new && !ks64 && !rec && !pc && !spl) row.b2[1] = t.st[3];
        if (pc) row.b4_pc = t.st[5];
        if (spl) row.b4_spl = t.st[5];
        if (pc || spl) continue;
        if (ks64) row.b4_64 = t.st[5];
        if (rec) row.b3_rec = t.st[4];
        if (b3_new == b4_new && !ks64 && !rec) {
          row.b3[b3_new] = t.st[4];
          row.b4[b3_new] = t.st[5];
          row.bwd[b3_new] = t.bwd;
        }
      }
      rows.push_back(row);
    }
  std::printf("\nB3 and B4 old vs new, same shape (ms)\n");
  std::printf("%8s %6s | %7s %7s %6s %7s | %7s %7s %6s %7s %7s %7s | %8s %8s\n", "T", "gate",
              "B3 old", "B3 new", "ratio", "B3 rec", "B4 old", "B4 new", "ratio", "B4 n64", "B4 pc",
              "B4 spl", "bwd old", "bwd new");
  for (const Row& r : rows)
    std::printf(
        "%8ld %6s | %7.3f %7.3f %5.2fx %7.3f | %7.3f %7.3f %5.2fx %7.3f %7.3f %7.3f | %8.3f "
        "%8.3f\n",
        long(r.seq), gate_names[r.gi], r.b3[0], r.b3[1], r.b3[1] > 0 ? r.b3[0] / r.b3[1] : 0.0,
        r.b3_rec, r.b4[0], r.b4[1], r.b4[1] > 0 ? r.b4[0] / r.b4[1] : 0.0, r.b4_64, r.b4_pc,
        r.b4_spl, r.bwd[0], r.bwd[1]);
}

}  // namespace kimi::cuda_bench
