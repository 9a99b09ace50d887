// CUDA benchmark (kimi_cuda_bench): the chunkwise KDA forward (and forward + backward, with the
// backward's stages) at bf16, H=16, K=V=128,
// B*T = 65,536 tokens, T = 2048 / 8192 / 32768, and the KDA decode step (H=32, K=V=128, fp32
// state in place) at B = 1 / 64 / 256. No peer figure is printed here: tools/peer_bench.py times
// flash-linear-attention and PyTorch beside `kimi-lab bench` in one run. Timing: CUDA events
// around each call after warm-up, the median of the repeats. Also measures the device-to-device
// copy ceiling first. Also the chunkwise gated linear recurrence (bench_linear, first).
// Usage: kimi_cuda_bench [--reps N] [--profile] [--linear] [--state] [--bwd-state] [--bwd-wy]
// [--intra]
// (--intra: the KDA intra kernels old and new with forward totals, bench_intra; --profile:
// only the chunk forward at T = 8192, three calls, for ncu; --linear: only the linear recurrence
// rows; --state: only the forward's state kernels side by side, bench_state; --bwd-state: the
// chunk backward's stages with its F2 and B1 walks old and new, bench_bwd_state; --bwd-wy: the
// same stages with B3 / B4 on WMMA TF32 (old) or bf16 mma.sync (new), bench_bwd_wy_gram)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/cuda/delta_rule/delta_rule.cuh"
#include "tests/cuda/cuda_common.h"

namespace {

using namespace kimi::cuda_test;
namespace kc = kimi::cuda;

struct Events {
  cudaEvent_t a, b, c;
  Events() {
    KIMI_CUDA_CHECK(cudaEventCreate(&a));
    KIMI_CUDA_CHECK(cudaEventCreate(&b));
    KIMI_CUDA_CHECK(cudaEventCreate(&c));
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaEventDestroy(c);
  }
  float ms(cudaEvent_t x, cudaEvent_t y) const {
    float m = 0;
    KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, x, y));
    return m;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Times f() `reps` times after `warm` calls; returns the median in ms.
template <class F>
double time_ms(int warm, int reps, F&& f) {
  Events ev;
  for (int i = 0; i < warm; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    KIMI_CUDA_CHECK(cudaEventRecord(ev.a, kc::stream()));
    f();
    KIMI_CUDA_CHECK(cudaEventRecord(ev.b, kc::stream()));
    KIMI_CUDA_CHECK(cudaEventSynchronize(ev.b));
    t.push_back(ev.ms(ev.a, ev.b));
  }
  return median(t);
}

// Fast host random numbers (xorshift64*), uniform in [-1, 1).
struct Rng {
  uint64_t s;
  double next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return double((s * 0x2545F4914F6CDD1DULL) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
  }
};

std::vector<double> uniform(size_t n, uint64_t seed, double lo, double hi) {
  Rng r{seed * 0x9E3779B97F4A7C15ULL + 1};
  std::vector<double> x(n);
  for (auto& e : x) e = lo + (hi - lo) * 0.5 * (r.next() + 1.0);
  return x;
}

void bench_copy() {
  const size_t n = size_t(1) << 30;  // 1 GiB each way
  kc::Buffer a(n), b(n);
  KIMI_CUDA_CHECK(cudaMemsetAsync(a.get(), 1, n, kc::stream()));
  const double ms = time_ms(2, 10, [&] {
    KIMI_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), n, cudaMemcpyDeviceToDevice, kc::stream()));
  });
  std::printf("device-to-device copy 1 GiB: %.3f ms = %.2f TB/s (read + write)\n", ms,
              2.0 * n / (ms * 1e-3) / 1e12);
}

// The chunk benchmarks' inputs, bf16, H=16, K=V=128, B*T = 65,536 tokens: the same buffers
// serve every T. k is L2-normalised per (token, head).
struct ChunkInputs {
  using T = __nv_bfloat16;
  static constexpr int64_t H = 16, K = 128, V = 128, NT = 65536;
  Dev<T> dq, dk, dv, dg, dbeta, o, dgs;
  ChunkInputs()
      : dq(uniform(NT * H * K, 1, -1, 1)),
        dk(normalised_k()),
        dv(uniform(NT * H * V, 3, -1, 1)),
        dg(uniform(NT * H * K, 4, -0.2, -0.001)),
        dbeta(uniform(NT * H, 5, 0.05, 0.95)),
        o(NT * H * V),
        dgs(uniform(NT * H, 7, -0.2, -0.001)) {}  // GDN's scalar gate; DeltaNet has none
  static std::vector<double> normalised_k() {
    std::vector<double> k = uniform(NT * H * K, 2, -1, 1);
    for (int64_t r = 0; r < NT * H; ++r) {
      double s = 0;
      for (int64_t i = 0; i < K; ++i) s += k[r * K + i] * k[r * K + i];
      for (int64_t i = 0; i < K; ++i) k[r * K + i] /= std::sqrt(s);
    }
    return k;
  }
  const T* gate(int gi) const { return gi == 0 ? dg.ptr() : gi == 1 ? dgs.ptr() : nullptr; }
};
const GateKind gates[3] = {GateKind::kPerChannel, GateKind::kScalar, GateKind::kNone};
const char* gate_names[3] = {"kda", "gdn", "delta"};

// The chunk forward of gate gi at sequence length seq, `reps` times after two warm-up calls:
// medians of (total, intra, state) ms from the events around its two kernels.
struct FwdTimes {
  double total, intra, state;
};
FwdTimes time_chunk_fwd(ChunkInputs& in, int gi, int64_t seq, int reps) {
  using T = ChunkInputs::T;
  const int64_t H = in.H, K = in.K, V = in.V, B = in.NT / seq;
  RecurrenceDims d{B, seq, H, K, V, gates[gi], 1.0 / std::sqrt(double(K)), 64};
  Dev<float> h0(B * H * K * V), ht(B * H * K * V);
  KIMI_CUDA_CHECK(cudaMemsetAsync(h0.ptr(), 0, h0.size() * 4, kc::stream()));
  Events ev;
  const kc::ChunkFwdEvents ce{ev.a, ev.b, ev.c};
  auto run = [&](const kc::ChunkFwdEvents* e) {
    kc::delta_rule_chunk_fwd<T>(d, in.dq.ptr(), in.dk.ptr(), in.dv.ptr(), in.gate(gi),
                                in.dbeta.ptr(), h0.ptr(), in.o.ptr(), ht.ptr(), kc::stream(), e);
  };
  for (int i = 0; i < 2; ++i) run(nullptr);
  std::vector<double> tot, intra, state;
  for (int i = 0; i < reps; ++i) {
    run(&ce);
    KIMI_CUDA_CHECK(cudaEventSynchronize(ev.c));
    tot.push_back(ev.ms(ev.a, ev.c));
    intra.push_back(ev.ms(ev.a, ev.b));
    state.push_back(ev.ms(ev.b, ev.c));
  }
  return {median(tot), median(intra), median(state)};
}

// The forward's state kernel side by side: the WMMA TF32 kernel (KIMI_CUDA_STATE_KERNEL=old),
// the tensor-core kernel with its own tile choice, and with 2, 4, 8 warps (V tiles of 32, 64,
// 128 columns; KIMI_CUDA_STATE_WARPS).
void bench_state(int reps) {
  ChunkInputs in;
  std::printf("\nchunk forward state kernel, bf16, H=16 K=V=128, B*T=65,536 tokens (ms)\n");
  std::printf("%8s %6s %6s %8s %10s %10s %10s\n", "T", "B", "gate", "kernel", "total", "intra",
              "state");
  for (int gi = 0; gi < 2; ++gi)
    for (int64_t seq : {2048, 8192, 32768})
      for (const char* variant : {"old", "auto", "2", "4", "8"}) {
        const std::string v = variant;
        if (v == "old") setenv("KIMI_CUDA_STATE_KERNEL", "old", 1);
        if (v != "old" && v != "auto") setenv("KIMI_CUDA_STATE_WARPS", variant, 1);
        const FwdTimes t = time_chunk_fwd(in, gi, seq, reps);
        unsetenv("KIMI_CUDA_STATE_KERNEL");
        unsetenv("KIMI_CUDA_STATE_WARPS");
        std::printf("%8ld %6ld %6s %8s %10.3f %10.3f %10.3f\n", long(seq), long(in.NT / seq),
                    gate_names[gi], (v == "old" || v == "auto") ? variant : ("w" + v).c_str(),
                    t.total, t.intra, t.state);
      }
}

// The forward's KDA intra kernel side by side: the WMMA TF32 kernel (KIMI_CUDA_INTRA_KERNEL=old)
// and the bf16 tensor-core kernel (delta_rule_chunk_intra_mma.cu), with the forward totals.
void bench_intra(int reps) {
  ChunkInputs in;
  std::printf(
      "\nchunk forward intra kernel, bf16, H=16 K=V=128, B*T=65,536 tokens (ms); old = the "
      "WMMA TF32 kernel of the gate kind, new = bf16 mma.sync\n");
  std::printf("%6s %8s %6s %8s %10s %10s %10s\n", "gate", "T", "B", "intra", "total", "intra",
              "state");
  for (int gi = 0; gi < 3; ++gi)
    for (int64_t seq : {2048, 8192, 32768})
      for (const char* variant : {"old", "new"}) {
        setenv("KIMI_CUDA_INTRA_KERNEL", variant, 1);
        const FwdTimes t = time_chunk_fwd(in, gi, seq, reps);
        unsetenv("KIMI_CUDA_INTRA_KERNEL");
        std::printf("%6s %8ld %6ld %8s %10.3f %10.3f %10.3f\n", gate_names[gi], long(seq),
                    long(in.NT / seq), variant, t.total, t.intra, t.state);
      }
}

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

// The chunk backward's stages (CUDA events, medians) with F2 on the WMMA TF32 walk
// (KIMI_CUDA_BWD_STATE_KERNEL=old) or on the tensor-core state kernel in store mode, and B1 on
// the WMMA TF32 walk (force_chunk_bwd_dh_kernel(kOld), as KIMI_CUDA_BWD_DH_KERNEL=old) or on
// the tensor-core dh walk: rows old/old, new/old, new/new (F2/B1), then B1 old and new side by
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
      for (const char* variant : {"old/old", "new/old", "new/new"}) {
        const bool f2_old = std::strncmp(variant, "old", 3) == 0;
        const bool b1_old = std::strcmp(variant + 4, "old") == 0;
        if (f2_old) setenv("KIMI_CUDA_BWD_STATE_KERNEL", "old", 1);
        kc::force_chunk_bwd_dh_kernel(b1_old ? kc::ChunkBwdDhKernel::kOld
                                             : kc::ChunkBwdDhKernel::kNew);
        const BwdStages t = timer.time(gi, seq, reps, variant);
        unsetenv("KIMI_CUDA_BWD_STATE_KERNEL");
        kc::force_chunk_bwd_dh_kernel(kc::ChunkBwdDhKernel::kEnv);
        if (!f2_old && b1_old) pr.b1_old = t.st[2], pr.bwd_old = t.bwd;
        if (!f2_old && !b1_old) pr.b1_new = t.st[2], pr.bwd_new = t.bwd;
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

void bench_chunk(int reps, bool profile) {
  using T = __nv_bfloat16;
  const int64_t H = 16, K = 128, V = 128, NT = 65536;
  std::printf("\nKDA chunk forward, bf16 in, fp32 state, H=%ld K=V=%ld, B*T=%ld tokens\n", long(H),
              long(K), long(NT));
  ChunkInputs in;
  Dev<T>&dq = in.dq, &dk = in.dk, &dv = in.dv, &dg = in.dg, &dbeta = in.dbeta, &o = in.o;
  auto gate_ptr = [&](int gi) -> const T* { return in.gate(gi); };
  std::printf("%8s %6s %6s %6s %10s %10s %10s %12s\n", "T", "B", "gate", "intra", "total ms",
              "intra ms", "state ms", "M tokens/s");
  for (const char* threads : {"512", "256"}) {
    if (profile && std::strcmp(threads, "512") != 0) continue;
    setenv("KIMI_CUDA_CHUNK_THREADS", threads, 1);  // intra-kernel block size (delta_rule_chunk.cu)
    for (int gi = 0; gi < 3; ++gi)
      for (int64_t seq : {2048, 8192, 32768}) {
        if (profile && seq != 8192) continue;
        if (gi > 0 && std::strcmp(threads, "512") != 0) continue;  // 256 threads: KDA only
        if (profile) {  // three calls (two warm-up), for ncu
          time_chunk_fwd(in, gi, seq, 1);
          KIMI_CUDA_CHECK(cudaStreamSynchronize(kc::stream()));
          return;
        }
        const FwdTimes t = time_chunk_fwd(in, gi, seq, reps);
        std::printf("%8ld %6ld %6s %6s %10.3f %10.3f %10.3f %12.2f\n", long(seq), long(NT / seq),
                    gate_names[gi], threads, t.total, t.intra, t.state,
                    NT / (t.total * 1e-3) / 1e6);
      }
  }
  unsetenv("KIMI_CUDA_CHUNK_THREADS");
  // Forward + backward (training: no h0, no final state, no dh0), the backward's stages timed
  // by events: F1 intra, F2 states h, B1 dh walk, B2 dGq/dW/dKd, B3 UT bwd, B4 Gram bwd.
  {
    std::printf(
        "\nKDA chunk forward + backward, bf16, same shape (peers: tools/peer_bench.py, timed "
        "in the same run)\n");
    Dev<T> dout(uniform(NT * H * V, 6, -1, 1)), gq(NT * H * K), gk(NT * H * K), gv(NT * H * V);
    Dev<T> gg(NT * H * K), gb(NT * H);
    std::printf("%8s %6s %6s %9s %9s %9s %9s | %6s %6s %6s %6s %6s %6s\n", "T", "B", "gate",
                "fwd ms", "bwd ms", "total ms", "M tok/s", "F1", "F2 h", "B1 dh", "B2", "B3 ut",
                "B4");
    std::vector<cudaEvent_t> evs(8);
    for (auto& e : evs) KIMI_CUDA_CHECK(cudaEventCreate(&e));
    kc::ChunkBwdEvents be{};
    for (int i = 0; i < 7; ++i) be.e[i] = evs[i + 1];
    for (int gi = 0; gi < 3; ++gi)
      for (int64_t seq : {2048, 8192, 32768}) {
        const int64_t B = NT / seq;
        RecurrenceDims d{B, seq, H, K, V, gates[gi], 1.0 / std::sqrt(double(K)), 64};
        auto step = [&](const kc::ChunkBwdEvents* e) {
          kc::delta_rule_chunk_fwd<T>(d, dq.ptr(), dk.ptr(), dv.ptr(), gate_ptr(gi), dbeta.ptr(),
                                      nullptr, o.ptr(), nullptr, kc::stream());
          kc::delta_rule_chunk_bwd<T>(d, dq.ptr(), dk.ptr(), dv.ptr(), gate_ptr(gi), dbeta.ptr(),
                                      nullptr, dout.ptr(), nullptr, gq.ptr(), gk.ptr(), gv.ptr(),
                                      gg.ptr(), gb.ptr(), nullptr, kc::stream(), e);
        };
        for (int i = 0; i < 2; ++i) step(nullptr);
        std::vector<double> tot, fwd, bwd, st[6];
        for (int i = 0; i < reps; ++i) {
          KIMI_CUDA_CHECK(cudaEventRecord(evs[0], kc::stream()));
          step(&be);
          KIMI_CUDA_CHECK(cudaEventSynchronize(evs[7]));
          float m = 0;
          KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, evs[0], evs[7]));
          tot.push_back(m);
          KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, evs[0], evs[1]));
          fwd.push_back(m);
          KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, evs[1], evs[7]));
          bwd.push_back(m);
          for (int k2 = 0; k2 < 6; ++k2) {
            KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, evs[k2 + 1], evs[k2 + 2]));
            st[k2].push_back(m);
          }
        }
        const double ms = median(tot);
        std::printf("%8ld %6ld %6s %9.3f %9.3f %9.3f %9.2f | %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f\n",
                    long(seq), long(B), gate_names[gi], median(fwd), median(bwd), ms,
                    NT / (ms * 1e-3) / 1e6, median(st[0]), median(st[1]), median(st[2]),
                    median(st[3]), median(st[4]), median(st[5]));
      }
    for (auto& e : evs) cudaEventDestroy(e);
  }
  // The recurrent kernel (the GPU oracle) at T=2048, for scale.
  {
    RecurrenceDims d{NT / 2048, 2048, H, K, V, GateKind::kPerChannel, 1.0 / std::sqrt(double(K)),
                     64};
    const double ms = time_ms(1, 3, [&] {
      kc::delta_rule_recurrent_fwd<T>(d, dq.ptr(), dk.ptr(), dv.ptr(), dg.ptr(), dbeta.ptr(),
                                      nullptr, o.ptr(), nullptr, kc::stream());
    });
    std::printf("recurrent (token by token) forward, T=2048: %.3f ms (%.2f M tokens/s)\n", ms,
                NT / (ms * 1e-3) / 1e6);
  }
}

// The chunkwise gated linear recurrence (Mamba2 SSD core / simple_gla): scalar gate (and one
// per-channel row), bf16, same shape as the KDA rows; forward (no h0, final state kept) and
// forward + backward (training: no h0, no final state, no dh0). Medians of CUDA-event times.
void bench_linear(int reps) {
  using T = __nv_bfloat16;
  const int64_t H = 16, K = 128, V = 128, NT = 65536;
  std::printf(
      "\nlinear recurrence chunk (simple_gla), bf16 in, fp32 state, H=%ld K=V=%ld, "
      "B*T=%ld tokens (peers: tools/peer_bench.py)\n",
      long(H), long(K), long(NT));
  Dev<T> q(uniform(NT * H * K, 21, -1, 1)), k(uniform(NT * H * K, 22, -0.2, 0.2));
  Dev<T> v(uniform(NT * H * V, 23, -1, 1)), dout(uniform(NT * H * V, 24, -1, 1));
  Dev<T> gs(uniform(NT * H, 25, -0.2, -0.001)), gc(uniform(NT * H * K, 26, -0.2, -0.001));
  Dev<T> o(NT * H * V), gq(NT * H * K), gk(NT * H * K), gv(NT * H * V), gg(NT * H * K);
  std::printf("%8s %6s %8s %9s %10s %9s\n", "T", "B", "gate", "fwd ms", "fwd+bwd ms", "M tok/s");
  for (int64_t seq : {2048, 8192, 32768, -8192}) {
    const bool channel = seq < 0;
    if (channel) seq = -seq;
    const int64_t B = NT / seq;
    const RecurrenceDims d{B,
                           seq,
                           H,
                           K,
                           V,
                           channel ? GateKind::kPerChannel : GateKind::kScalar,
                           1.0 / std::sqrt(double(K)),
                           64};
    const T* g = channel ? gc.ptr() : gs.ptr();
    Dev<float> ht(B * H * K * V);
    const double fwd = time_ms(2, reps, [&] {
      kc::linear_recurrence_chunk_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g, nullptr, o.ptr(),
                                         ht.ptr(), kc::stream());
    });
    const double tot = time_ms(2, reps, [&] {
      kc::linear_recurrence_chunk_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g, nullptr, o.ptr(), nullptr,
                                         kc::stream());
      kc::linear_recurrence_chunk_bwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g, nullptr, dout.ptr(),
                                         nullptr, gq.ptr(), gk.ptr(), gv.ptr(), gg.ptr(), nullptr,
                                         kc::stream());
    });
    std::printf("%8ld %6ld %8s %9.3f %10.3f %9.2f\n", long(seq), long(B),
                channel ? "channel" : "scalar", fwd, tot, NT / (tot * 1e-3) / 1e6);
  }
}

void bench_decode(int reps) {
  using T = __nv_bfloat16;
  const int64_t H = 32, K = 128, V = 128;
  std::printf("\nKDA decode step, bf16 q/k/v/g/beta, fp32 state [B,32,128,128] updated in place\n");
  std::printf("%6s %10s %14s %10s\n", "B", "us", "state MB r+w", "TB/s");
  for (int64_t B : {1, 64, 256}) {
    RecurrenceDims d{B, 1, H, K, V, GateKind::kPerChannel, 1.0 / std::sqrt(double(K)), 64};
    Dev<T> q(uniform(B * H * K, 11, -1, 1)), k(uniform(B * H * K, 12, -0.1, 0.1));
    Dev<T> v(uniform(B * H * V, 13, -1, 1)), g(uniform(B * H * K, 14, -0.2, -0.001));
    Dev<T> beta(uniform(B * H, 15, 0.05, 0.95)), o(B * H * V);
    Dev<float> state(uniform(B * H * K * V, 16, -1, 1));
    const double ms = time_ms(5, reps * 5, [&] {
      kc::delta_rule_decode_step<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), beta.ptr(), state.ptr(),
                                    o.ptr(), kc::stream());
    });
    const double bytes = 2.0 * B * H * K * V * 4;
    std::printf("%6ld %10.2f %14.1f %10.2f\n", long(B), ms * 1e3, bytes / 1e6,
                bytes / (ms * 1e-3) / 1e12);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 10;
  bool profile = false, linear_only = false, state_only = false, bwd_state_only = false,
       intra_only = false, bwd_wy_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--profile") == 0) profile = true;
    if (std::strcmp(argv[i], "--linear") == 0) linear_only = true;
    if (std::strcmp(argv[i], "--state") == 0) state_only = true;
    if (std::strcmp(argv[i], "--bwd-state") == 0) bwd_state_only = true;
    if (std::strcmp(argv[i], "--intra") == 0) intra_only = true;
    if (std::strcmp(argv[i], "--bwd-wy") == 0) bwd_wy_only = true;
  }
  if (!kc::device_present()) {
    std::printf("SKIP: no CUDA device present\n");
    return 0;
  }
  try {
    cudaDeviceProp prop{};
    KIMI_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs, %.0f MB L2\n", prop.name, prop.multiProcessorCount,
                prop.l2CacheSize / 1e6);
    if (profile) {
      bench_chunk(1, true);
      return 0;
    }
    if (state_only) {
      bench_state(reps);
      return 0;
    }
    if (bwd_state_only) {
      bench_bwd_state(reps);
      return 0;
    }
    if (intra_only) {
      bench_intra(reps);
      return 0;
    }
    if (bwd_wy_only) {
      bench_bwd_wy_gram(reps);
      return 0;
    }
    bench_linear(reps);
    if (linear_only) return 0;
    bench_copy();
    bench_decode(reps);
    bench_chunk(reps, false);
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  return 0;
}
