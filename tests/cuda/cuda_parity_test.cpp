// CUDA parity tests (kimi_cuda_tests): every CUDA kernel of core/cuda against the CPU kernels
// (core/kernels/cpu, run in float64) on random inputs of odd sizes (T not a multiple of the
// chunk, K != V), and against the golden tensors of flash-linear-attention
// (linear_ops_small.safetensors), forward and backward of the recurrent and chunk forms. Every
// output, final state and gradient is compared by relative error per tensor; outputs are
// poisoned with NaN before each run. Tolerances: fp32
// kernels 1e-5 (outputs) / 1e-4 (gradients), TF32 chunk kernels 5e-3, bf16 2e-2 (golden/README).
// Usage: kimi_cuda_tests [--quick] [GOLDEN_DIR]   (default: .gpu/golden, then ../shared/golden)
// --quick leaves out the large cases (for runs under compute-sanitizer).
// Exit status 0 when every check passes or no GPU is present (then it says it skipped).
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/cuda/delta_rule.cuh"
#include "core/io/safetensors.h"
#include "tests/cuda/cuda_common.h"

namespace {

using namespace kimi::cuda_test;
namespace kc = kimi::cuda;

constexpr double kTolOut = 1e-5, kTolGrad = 1e-4, kTolTf32 = 5e-3, kTolBf16 = 2e-2;

struct Report {
  int checks = 0, fails = 0;
  void check(const std::string& what, const std::string& tensor, double err, double tol) {
    ++checks;
    const bool ok = err <= tol;  // NaN / inf fail
    if (!ok) ++fails;
    std::printf("%-44s %-6s %10.3e  (tol %.0e)  %s\n", what.c_str(), tensor.c_str(), err, tol,
                ok ? "ok" : "FAIL");
  }
  void check_true(const std::string& what, bool ok) {
    ++checks;
    if (!ok) ++fails;
    std::printf("%-44s %-6s %10s  %13s  %s\n", what.c_str(), "-", "-", "", ok ? "ok" : "FAIL");
  }
};

struct Result {
  std::vector<double> o, ht, dq, dk, dv, dg, dbeta, dh0;
};

const char* gate_name(GateKind g) {
  return g == GateKind::kNone ? "none" : g == GateKind::kScalar ? "scalar" : "channel";
}

const double* ptr(const std::vector<double>& v) { return v.empty() ? nullptr : v.data(); }

// CPU reference in float64: the recurrent form, forward and (optionally) backward.
Result cpu_reference(const Problem& p, bool backward) {
  using namespace kimi::cpu;
  const RecurrenceDims& d = p.d;
  const int64_t BTH = d.B * d.T * d.H, S = d.B * d.H * d.K * d.V;
  Result r;
  r.o.assign(BTH * d.V, 0);
  r.ht.assign(S, 0);
  if (p.delta)
    delta_rule_recurrent_fwd<double>(d, p.q.data(), p.k.data(), p.v.data(), ptr(p.g), p.beta.data(),
                                     ptr(p.h0), r.o.data(), r.ht.data());
  else
    linear_recurrence_recurrent_fwd<double>(d, p.q.data(), p.k.data(), p.v.data(), ptr(p.g),
                                            ptr(p.h0), r.o.data(), r.ht.data());
  if (!backward) return r;
  r.dq.assign(BTH * d.K, 0);
  r.dk.assign(BTH * d.K, 0);
  r.dv.assign(BTH * d.V, 0);
  r.dg.assign(p.g.size(), 0);
  r.dbeta.assign(p.beta.size(), 0);
  r.dh0.assign(S, 0);
  if (p.delta)
    delta_rule_recurrent_bwd<double>(d, p.q.data(), p.k.data(), p.v.data(), ptr(p.g), p.beta.data(),
                                     ptr(p.h0), p.do_.data(), ptr(p.dht), r.dq.data(), r.dk.data(),
                                     r.dv.data(), r.dg.empty() ? nullptr : r.dg.data(),
                                     r.dbeta.data(), r.dh0.data());
  else
    linear_recurrence_recurrent_bwd<double>(
        d, p.q.data(), p.k.data(), p.v.data(), ptr(p.g), ptr(p.h0), p.do_.data(), ptr(p.dht),
        r.dq.data(), r.dk.data(), r.dv.data(), r.dg.empty() ? nullptr : r.dg.data(), r.dh0.data());
  return r;
}

enum class Form { kRecurrent, kChunk };

// The CUDA kernels on the same problem (inputs in T; states fp32).
// Form::kChunk with `backward`: the chunk forward, then the chunk backward (dh0 nullptr
// unless want_dh0).
template <class T>
Result cuda_run(const Problem& p, Form form, bool backward, bool want_dh0 = true) {
  const RecurrenceDims& d = p.d;
  const int64_t BTH = d.B * d.T * d.H, S = d.B * d.H * d.K * d.V;
  Dev<T> q(p.q), k(p.k), v(p.v), o(BTH * d.V);
  Dev<T> g = p.g.empty() ? Dev<T>() : Dev<T>(p.g);
  Dev<T> beta = p.beta.empty() ? Dev<T>() : Dev<T>(p.beta);
  Dev<float> h0(p.h0), ht(S);
  const cudaStream_t st = kc::stream();
  if (form == Form::kChunk && !p.delta)
    kc::linear_recurrence_chunk_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), h0.ptr(), o.ptr(),
                                       ht.ptr(), st);
  else if (form == Form::kChunk)
    kc::delta_rule_chunk_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), beta.ptr(), h0.ptr(),
                                o.ptr(), ht.ptr(), st);
  else if (p.delta)
    kc::delta_rule_recurrent_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), beta.ptr(), h0.ptr(),
                                    o.ptr(), ht.ptr(), st);
  else
    kc::linear_recurrence_recurrent_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), h0.ptr(), o.ptr(),
                                           ht.ptr(), st);
  Result r;
  r.o = o.download();
  r.ht = ht.download();
  if (!backward) return r;
  Dev<T> do_(p.do_), dq(BTH * d.K), dk(BTH * d.K), dv(BTH * d.V);
  Dev<T> dg = p.g.empty() ? Dev<T>() : Dev<T>(p.g.size());
  Dev<T> dbeta = p.beta.empty() ? Dev<T>() : Dev<T>(p.beta.size());
  Dev<float> dht(p.dht), dh0(want_dh0 ? S : 0);
  if (form == Form::kChunk && !p.delta)
    kc::linear_recurrence_chunk_bwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), h0.ptr(), do_.ptr(),
                                       dht.ptr(), dq.ptr(), dk.ptr(), dv.ptr(), dg.ptr(),
                                       dh0.ptr(), st);
  else if (form == Form::kChunk)
    kc::delta_rule_chunk_bwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), beta.ptr(), h0.ptr(),
                                do_.ptr(), dht.ptr(), dq.ptr(), dk.ptr(), dv.ptr(), dg.ptr(),
                                dbeta.ptr(), dh0.ptr(), st);
  else if (p.delta)
    kc::delta_rule_recurrent_bwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), beta.ptr(), h0.ptr(),
                                    do_.ptr(), dht.ptr(), dq.ptr(), dk.ptr(), dv.ptr(), dg.ptr(),
                                    dbeta.ptr(), dh0.ptr(), st);
  else
    kc::linear_recurrence_recurrent_bwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), h0.ptr(),
                                           do_.ptr(), dht.ptr(), dq.ptr(), dk.ptr(), dv.ptr(),
                                           dg.ptr(), dh0.ptr(), st);
  r.dq = dq.download();
  r.dk = dk.download();
  r.dv = dv.download();
  if (dg.size()) r.dg = dg.download();
  if (dbeta.size()) r.dbeta = dbeta.download();
  if (want_dh0) r.dh0 = dh0.download();
  return r;
}

void compare(Report& rep, const std::string& what, const Result& got, const Result& ref,
             double tol_out, double tol_grad) {
  rep.check(what, "o", rel_err(got.o, ref.o), tol_out);
  rep.check(what, "ht", rel_err(got.ht, ref.ht), tol_out);
  if (got.dq.empty()) return;
  rep.check(what, "dq", rel_err(got.dq, ref.dq), tol_grad);
  rep.check(what, "dk", rel_err(got.dk, ref.dk), tol_grad);
  rep.check(what, "dv", rel_err(got.dv, ref.dv), tol_grad);
  if (!ref.dg.empty()) rep.check(what, "dg", rel_err(got.dg, ref.dg), tol_grad);
  if (!ref.dbeta.empty()) rep.check(what, "dbeta", rel_err(got.dbeta, ref.dbeta), tol_grad);
  if (!got.dh0.empty()) rep.check(what, "dh0", rel_err(got.dh0, ref.dh0), tol_grad);
}

std::string dims_str(const RecurrenceDims& d) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "B%ld T%ld H%ld K%ld V%ld", long(d.B), long(d.T), long(d.H),
                long(d.K), long(d.V));
  return buf;
}

// The chunk backward on shapes the cases above leave out: padded head size 128 with K != V
// (both ways, V not a multiple of 16), one short chunk, T a multiple of the chunk, no h0 / dht
// (zero), dh0 not wanted; fp32 (TF32 products) and bf16, every gate kind.
void chunk_bwd_cases(Report& rep) {
  struct Case {
    int64_t B, T, H, K, V;
    GateKind gate;
    bool states, want_dh0;
  };
  const Case cases[] = {
      {1, 77, 2, 128, 72, GateKind::kPerChannel, true, true},
      {2, 128, 2, 96, 128, GateKind::kScalar, true, false},
      {2, 37, 3, 64, 24, GateKind::kNone, false, true},
      {1, 192, 2, 100, 36, GateKind::kPerChannel, false, false},
      {2, 70, 2, 32, 128, GateKind::kScalar, false, true},
  };
  uint64_t seed = 300;
  for (bool delta : {true, false})
  for (const Case& c : cases) {
    RecurrenceDims d{c.B, c.T, c.H, c.K, c.V, c.gate, 1.0 / std::sqrt(double(c.K)), 64};
    Problem p = random_problem(d, delta, ++seed);
    if (!c.states) {
      p.h0.clear();
      p.dht.clear();
    }
    char tag[128];
    std::snprintf(tag, sizeof tag, "%schunk bwd %s %s%s%s", delta ? "" : "linear ",
                  gate_name(c.gate), dims_str(d).c_str(),
                  c.states ? "" : " no h0/dht", c.want_dh0 ? "" : " no dh0");
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
// and 32-wide V tiles (many heads), strong per-channel decays, Mamba2-like scale 1.
void linear_chunk_cases(Report& rep) {
  struct Case {
    int64_t B, T, H, K, V;
    GateKind gate;
    double decay, scale;
  };
  const Case cases[] = {{4, 100, 40, 128, 128, GateKind::kScalar, 1.0, 0.0},
                        {1, 150, 40, 128, 96, GateKind::kPerChannel, 1.0, 0.0},
                        {2, 200, 3, 128, 128, GateKind::kPerChannel, 10.0, 0.0},
                        {2, 129, 3, 64, 64, GateKind::kScalar, 1.0, 1.0}};
  uint64_t seed = 500;
  for (const Case& c : cases) {
    RecurrenceDims d{c.B, c.T, c.H, c.K, c.V, c.gate,
                     c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(c.K)), 64};
    const Problem p = random_problem(d, false, ++seed, c.decay);
    char tag[128];
    std::snprintf(tag, sizeof tag, "linear chunk %s %s%s", gate_name(c.gate),
                  dims_str(d).c_str(), c.decay > 1 ? " strong" : "");
    const Problem pf = as_type<float>(p);
    compare(rep, std::string(tag) + " f32", cuda_run<float>(pf, Form::kChunk, true),
            cpu_reference(pf, true), kTolTf32, kTolTf32);
    const Problem pb = as_type<__nv_bfloat16>(p);
    compare(rep, std::string(tag) + " bf16", cuda_run<__nv_bfloat16>(pb, Form::kChunk, true),
            cpu_reference(pb, true), kTolBf16, kTolBf16);
  }
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
          compare(rep, tag + "recurrent bf16",
                  cuda_run<__nv_bfloat16>(pb, Form::kRecurrent, true), ref, kTolBf16, kTolBf16);
        compare(rep, tag + "chunk bf16", cuda_run<__nv_bfloat16>(pb, Form::kChunk, true), ref,
                kTolBf16, kTolBf16);
      }
    }
  }
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
  linear_chunk_cases(rep);
  chunk_bwd_cases(rep);
}

// Decoding: T single steps with the state updated in place equal one recurrent forward
// (K = 128: the vectorised decode kernel, V = 96 leaves part of a block idle; K = 48: the
// recurrent kernel with T = 1).
void decode_case(Report& rep, const RecurrenceDims& d, const std::string& name);
void decode_cases(Report& rep) {
  decode_case(rep, {3, 6, 4, 128, 128, GateKind::kPerChannel, 1.0 / std::sqrt(128.0), 64}, "kda");
  decode_case(rep, {2, 5, 3, 128, 96, GateKind::kScalar, 1.0 / std::sqrt(128.0), 64}, "gdn V96");
  decode_case(rep, {2, 5, 3, 48, 40, GateKind::kPerChannel, 1.0 / std::sqrt(48.0), 64},
              "kda K48 V40");
}

void decode_case(Report& rep, const RecurrenceDims& d, const std::string& name) {
  const Problem p = as_type<float>(random_problem(d, true, 11));
  const Result ref = cpu_reference(p, false);
  RecurrenceDims d1 = d;
  d1.T = 1;
  Dev<float> state(p.h0);
  std::vector<double> o(ref.o.size());
  for (int64_t t = 0; t < d.T; ++t) {
    auto slice = [&](const std::vector<double>& x, int64_t per_tok) {
      std::vector<double> s;
      for (int64_t b = 0; b < d.B; ++b)
        for (int64_t i = 0; i < d.H * per_tok; ++i)
          s.push_back(x[(b * d.T + t) * d.H * per_tok + i]);
      return s;
    };
    const int64_t gw = d.gate == GateKind::kPerChannel ? d.K : 1;
    Dev<float> q(slice(p.q, d.K)), k(slice(p.k, d.K)), v(slice(p.v, d.V)), g(slice(p.g, gw)),
        beta(slice(p.beta, 1)), ot(d.B * d.H * d.V);
    kc::delta_rule_decode_step<float>(d1, q.ptr(), k.ptr(), v.ptr(), g.ptr(), beta.ptr(),
                                      state.ptr(), ot.ptr(), kc::stream());
    const std::vector<double> oh = ot.download();
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t i = 0; i < d.H * d.V; ++i)
        o[(b * d.T + t) * d.H * d.V + i] = oh[b * d.H * d.V + i];
  }
  const std::string tag = name + " decode in place f32";
  rep.check(tag, "o", rel_err(o, ref.o), kTolOut);
  rep.check(tag, "ht", rel_err(state.download(), ref.ht), kTolOut);
}

// The golden tensors of flash-linear-attention (B=2 T=100 H=2 K=32 V=48).
void golden_cases(Report& rep, const std::string& dir) {
  const std::string path = dir + "/linear_ops_small.safetensors";
  if (!std::filesystem::exists(path)) {
    std::printf("SKIP golden: %s not found\n", path.c_str());
    return;
  }
  auto f = kimi::io::SafetensorsFile::open(path);
  struct G {
    const char* prefix;
    GateKind gate;
  };
  for (G c : {G{"kda.", GateKind::kPerChannel}, G{"gdn.", GateKind::kScalar},
              G{"deltanet.", GateKind::kNone}, G{"simple_gla.", GateKind::kScalar}}) {
    const bool delta = std::string(c.prefix) != "simple_gla.";
    const std::string pre = c.prefix;
    auto get = [&](const char* name) { return f.read_f64(pre + name); };
    const auto shape = f.info(pre + "q").shape;
    const auto vshape = f.info(pre + "v").shape;
    RecurrenceDims d{shape[0],
                     shape[1],
                     shape[2],
                     shape[3],
                     vshape[3],
                     c.gate,
                     1.0 / std::sqrt(double(shape[3])),
                     64};
    Problem p;
    p.d = d;
    p.delta = delta;
    p.q = get("q");
    p.k = get("k");
    p.v = get("v");
    if (delta) p.beta = get("beta");
    if (c.gate != GateKind::kNone) p.g = get("g");
    p.h0 = get("h0");
    p.do_ = get("do");
    p.dht = get("dht");
    Result ref;
    ref.o = get("o");
    ref.ht = get("ht");
    ref.dq = get("dq");
    ref.dk = get("dk");
    ref.dv = get("dv");
    if (delta) ref.dbeta = get("dbeta");
    ref.dh0 = get("dh0");
    if (c.gate != GateKind::kNone) ref.dg = get("dg");
    const std::string tag = "golden " + pre.substr(0, pre.size() - 1) + " ";
    compare(rep, tag + "recurrent f32", cuda_run<float>(p, Form::kRecurrent, true), ref, kTolOut,
            kTolGrad);
    compare(rep, tag + "chunk f32 (tf32)", cuda_run<float>(p, Form::kChunk, true), ref, kTolTf32,
            kTolTf32);
    if (!delta) {  // bf16: against the oracle on the bf16-rounded golden inputs
      const Problem pb = as_type<__nv_bfloat16>(p);
      compare(rep, tag + "chunk bf16", cuda_run<__nv_bfloat16>(pb, Form::kChunk, true),
              cpu_reference(pb, true), kTolBf16, kTolBf16);
    }
  }
}

// The caching allocator reuses blocks; strided copies convert and permute correctly.
void memory_cases(Report& rep) {
  const auto before = kc::allocator_stats();
  for (int i = 0; i < 1000; ++i) {
    kc::Buffer a(1000 + i % 7), b(1 << 20);
  }
  const auto after = kc::allocator_stats();
  rep.check_true("allocator: 2000 allocs, <= 3 cudaMalloc",
                 after.cuda_mallocs - before.cuda_mallocs <= 3);
  rep.check_true("allocator: size classes",
                 kc::size_class(1) == 512 && kc::size_class(513) == 640 &&
                     kc::size_class(1024) == 1024 && kc::size_class(1025) == 1280);
  // [3,5,7] f32, viewed as its [7,5,3] transpose, copied to contiguous bf16 then back to f32.
  const int A = 3, B = 5, C = 7;
  std::vector<double> h(A * B * C);
  for (size_t i = 0; i < h.size(); ++i) h[i] = std::sin(0.37 * i) * 10;
  Dev<float> src(h), back(h.size());
  Dev<__nv_bfloat16> mid(h.size());
  kc::StridedView vs;
  vs.data = src.ptr();
  vs.type = kc::ElemType::kF32;
  vs.ndim = 3;
  vs.shape[0] = C;
  vs.shape[1] = B;
  vs.shape[2] = A;
  vs.strides[0] = 1;
  vs.strides[1] = C;
  vs.strides[2] = B * C;
  kc::StridedView vm = vs;
  vm.data = mid.ptr();
  vm.type = kc::ElemType::kBF16;
  vm.strides[0] = B * A;
  vm.strides[1] = A;
  vm.strides[2] = 1;
  kc::copy_strided(vm, vs);
  kc::StridedView vb = vm;
  vb.data = back.ptr();
  vb.type = kc::ElemType::kF32;
  kc::copy_strided(vb, vm);
  std::vector<double> want(h.size());
  for (int c = 0; c < C; ++c)
    for (int b = 0; b < B; ++b)
      for (int a = 0; a < A; ++a) want[(c * B + b) * A + a] = round_bf16(h[(a * B + b) * C + c]);
  rep.check("copy_strided: permute + f32->bf16->f32", "x", rel_err(back.download(), want), 0.0);
  kc::fill_strided(vb, -2.5);
  bool all = true;
  for (double x : back.download()) all = all && x == -2.5;
  rep.check_true("fill_strided", all);
}

}  // namespace

int main(int argc, char** argv) {
  if (!kc::device_present()) {
    std::printf("SKIP: no CUDA device present (cuda_available() is false); nothing was run\n");
    return 0;
  }
  bool quick = false;
  std::string golden;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick")
      quick = true;
    else
      golden = argv[i];
  }
  if (golden.empty())
    golden = std::filesystem::exists(".gpu/golden") ? ".gpu/golden" : KIMI_GOLDEN_DIR;
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
  };
  for (const auto& [name, fn] : groups) {
    try {
      fn();
    } catch (const std::exception& e) {
      ++rep.fails;
      std::printf("FAIL %s: exception: %s\n", name, e.what());
    }
  }
  std::printf("%d checks, %d failed\n", rep.checks, rep.fails);
  return rep.fails ? 1 : 0;
}
