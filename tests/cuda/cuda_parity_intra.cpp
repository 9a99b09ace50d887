// Parity cases of the chunk forward's intra kernel on bf16 tensor cores
// (core/cuda/delta_rule/delta_rule_chunk_intra_mma.cu), for per-channel (KDA), scalar (GDN) and no
// gates (DeltaNet), against the WMMA TF32 kernel of the gate kind it replaces
// (KIMI_CUDA_INTRA_KERNEL=old) and against the double-precision reference of the intra outputs
// (tests/chunk_intra_reference.h), for every buffer the intra kernel hands the state kernel
// (W, U, Gq, Kd, A_qk, exp(G_last), through kc::delta_rule_chunk_intra), then the whole chunk
// forward (o, final state) new and old against the CPU oracle. Odd shapes: T not a multiple of
// 64, K != V both ways (K=64/V=128, K=128/V=32), K < the padded head size, one short chunk,
// strong decays (diagonal blocks on the exact fp32 path; decays of 30 per token would overflow
// a split block). `quick` keeps the first two shapes of each gate kind (compute-sanitizer runs:
// kimi_cuda_tests --intra --quick).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/chunk_intra_reference.h"
#include "tests/cuda/recurrence_parity.h"

namespace kimi::cuda_test {

namespace {

// KIMI_CUDA_INTRA_KERNEL set to `v` ("old", or "new" = the default choice) for the scope, and
// restored after it (the whole test binary may run under KIMI_CUDA_INTRA_KERNEL=old).
class IntraKernelEnv {
 public:
  explicit IntraKernelEnv(const char* v) {
    if (const char* e = std::getenv("KIMI_CUDA_INTRA_KERNEL")) {
      saved_ = e;
      had_ = true;
    }
    setenv("KIMI_CUDA_INTRA_KERNEL", v, 1);
  }
  ~IntraKernelEnv() {
    if (had_)
      setenv("KIMI_CUDA_INTRA_KERNEL", saved_.c_str(), 1);
    else
      unsetenv("KIMI_CUDA_INTRA_KERNEL");
  }

 private:
  std::string saved_;
  bool had_ = false;
};

struct IntraRun {
  std::vector<double> W, U, Gq, Kd, Aqk, EgL;
};

IntraRun run_intra(const Problem& pb, bool old) {
  using T = __nv_bfloat16;
  const RecurrenceDims& d = pb.d;
  const int64_t BTH = d.B * d.T * d.H, NC = (d.T + 63) / 64;
  Dev<T> q(pb.q), k(pb.k), v(pb.v), g(pb.g), beta(pb.beta);
  Dev<T> W(BTH * d.K), U(BTH * d.V), Gq(BTH * d.K), Kd(BTH * d.K);
  Dev<float> Aqk(d.B * d.H * NC * 64 * 64), EgL(d.B * d.H * NC * d.K);
  {
    const IntraKernelEnv env(old ? "old" : "new");
    kc::delta_rule_chunk_intra<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), beta.ptr(), W.ptr(),
                                  U.ptr(), Gq.ptr(), Kd.ptr(), Aqk.ptr(), EgL.ptr(), kc::stream());
  }
  KIMI_CUDA_CHECK(cudaStreamSynchronize(kc::stream()));
  return {W.download(), U.download(), Gq.download(), Kd.download(), Aqk.download(), EgL.download()};
}

void check_intra(Report& rep, const std::string& tag, const IntraRun& got,
                 const test::IntraOutputs& ref, double tol) {
  using test::rel_err_of;
  rep.check(tag, "W", rel_err_of(got.W, ref.W), tol);
  rep.check(tag, "U", rel_err_of(got.U, ref.U), tol);
  rep.check(tag, "Gq", rel_err_of(got.Gq, ref.Gq), tol);
  rep.check(tag, "Kd", rel_err_of(got.Kd, ref.Kd), tol);
  rep.check(tag, "A_qk", rel_err_of(got.Aqk, ref.Aqk), tol);
  // exp(G_last) leaves fp32's normal range under strong decays (a chunk's summed log-decay
  // below about -87): those entries are checked to be tiny, the rest relatively.
  std::vector<double> a, b;
  double tiny_worst = 0;
  for (size_t i = 0; i < ref.EgL.size(); ++i) {
    if (ref.EgL[i] >= 1e-30) {
      a.push_back(got.EgL[i]), b.push_back(ref.EgL[i]);
    } else {
      tiny_worst = std::max(tiny_worst, std::abs(got.EgL[i]));
    }
  }
  if (!a.empty()) rep.check(tag, "e^G_L", rel_err_of(a, b), tol);
  rep.check(tag, "e^G_L tiny", tiny_worst, 1e-29);
}

test::IntraOutputs as_ref(const IntraRun& r) { return {r.W, r.U, r.Gq, r.Kd, r.Aqk, r.EgL}; }

// The gates as the per-channel reference takes them: a scalar gate repeated over the K channels
// of its token, no gate as zeros.
std::vector<double> per_channel_gates(const Problem& p) {
  const RecurrenceDims& d = p.d;
  if (d.gate == GateKind::kPerChannel) return p.g;
  std::vector<double> g(size_t(d.B * d.T * d.H * d.K), 0.0);
  if (d.gate == GateKind::kScalar)
    for (size_t r = 0; r < p.g.size(); ++r)
      for (int64_t c = 0; c < d.K; ++c) g[r * d.K + c] = p.g[r];
  return g;
}

}  // namespace

void intra_kernel_cases(Report& rep, bool quick) {
  struct Case {
    int64_t B, T, H, K, V;
    double decay;
    bool h0;
    GateKind gate = GateKind::kPerChannel;
  };
  const Case cases[] = {
      {2, 130, 3, 64, 128, 1.0, true},   // K < V, padded head 128, short last chunk
      {1, 200, 2, 128, 32, 10.0, true},  // V < K, strong decays: exact diagonal blocks
      {2, 77, 2, 128, 128, 1.0, false},  // full head, no h0
      {1, 150, 2, 48, 40, 1.0, true},    // padded head 64, K and V below it
      {1, 90, 2, 128, 64, 30.0, true},   // a split diagonal block would overflow
      {2, 64, 2, 96, 72, 4.0, true},     // whole chunks, spans near the split threshold
      {1, 40, 1, 32, 64, 0.05, true},    // one short chunk, weak decays
      // Scalar gates (GDN) and none (DeltaNet) on the same kernel:
      {2, 130, 3, 128, 64, 1.0, true, GateKind::kScalar},    // K > V, short last chunk
      {1, 200, 2, 64, 128, 10.0, false, GateKind::kScalar},  // strong: exact diagonal blocks
      {1, 90, 2, 48, 40, 30.0, true, GateKind::kScalar},     // padded head, would overflow a split
      {2, 77, 2, 128, 128, 1.0, true, GateKind::kNone},      // full head
      {1, 150, 2, 64, 24, 1.0, false, GateKind::kNone},      // K != V, no h0
  };
  uint64_t seed = 1100;
  int of_gate[3] = {};
  for (const Case& c : cases) {
    ++seed;  // the same problem for a case whether or not others before it run
    if (quick && ++of_gate[int(c.gate)] > 2) continue;
    RecurrenceDims d{c.B, c.T, c.H, c.K, c.V, c.gate, 1.0 / std::sqrt(double(c.K)), 64};
    Problem p = random_problem(d, true, seed, c.decay);
    if (!c.h0) p.h0.clear();
    const Problem pb = as_type<__nv_bfloat16>(p);
    char base[128];
    std::snprintf(base, sizeof base, "%s%s%s%s bf16", dims_str(d).c_str(),
                  c.gate == GateKind::kScalar ? " scalar"
                  : c.gate == GateKind::kNone ? " no gate"
                                              : "",
                  c.decay != 1.0 ? (c.decay > 1 ? " strong" : " weak") : "", c.h0 ? "" : " no h0");
    const test::IntraOutputs ref =
        test::chunk_intra_reference(int(d.B), int(d.T), int(d.H), int(d.K), int(d.V), d.scale, pb.q,
                                    pb.k, pb.v, per_channel_gates(pb), pb.beta);
    const IntraRun got = run_intra(pb, false), old = run_intra(pb, true);
    check_intra(rep, std::string("intra new ") + base, got, ref, kTolBf16);
    check_intra(rep, std::string("intra old ") + base, old, ref, kTolBf16);
    check_intra(rep, std::string("intra new~old ") + base, got, as_ref(old), kTolBf16);
    // The whole forward: o and the final state, new and old intra kernel.
    const Result fref = cpu_reference(pb, false);
    for (const char* which : {"new", "old"}) {
      const IntraKernelEnv env(which);
      compare(rep, std::string("intra fwd ") + which + " " + base,
              cuda_run<__nv_bfloat16>(pb, Form::kChunk, false), fref, kTolBf16, kTolBf16);
    }
  }
}

}  // namespace kimi::cuda_test
