// Shared by the CUDA kernel parity tests (kimi_cuda_tests: cuda_parity_test.cpp and
// cuda_parity_golden.cpp): the report of checks, the CPU float64 reference and the CUDA run of
// one random recurrence problem, and the per-tensor comparison.
#pragma once

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "core/cuda/delta_rule/delta_rule.cuh"
#include "tests/cuda/cuda_common.h"

namespace kimi::cuda_test {

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

inline const char* gate_name(GateKind g) {
  return g == GateKind::kNone ? "none" : g == GateKind::kScalar ? "scalar" : "channel";
}

inline const double* ptr(const std::vector<double>& v) { return v.empty() ? nullptr : v.data(); }

// CPU reference in float64: the recurrent form, forward and (optionally) backward.
inline Result cpu_reference(const Problem& p, bool backward) {
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
                                       dht.ptr(), dq.ptr(), dk.ptr(), dv.ptr(), dg.ptr(), dh0.ptr(),
                                       st);
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

inline void compare(Report& rep, const std::string& what, const Result& got, const Result& ref,
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

// Whether the bf16 chunk form of `p` (with the backward or not) is refused with an exception, as
// a setting's bad value must be (never taken as one of its valid values); the launches before
// the refusal are waited for.
inline bool chunk_run_refused(const Problem& p, bool backward) {
  bool refused = false;
  try {
    cuda_run<__nv_bfloat16>(p, Form::kChunk, backward);
  } catch (const std::exception&) {
    refused = true;
  }
  KIMI_CUDA_CHECK(cudaStreamSynchronize(kc::stream()));
  return refused;
}

inline std::string dims_str(const RecurrenceDims& d) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "B%ld T%ld H%ld K%ld V%ld", long(d.B), long(d.T), long(d.H),
                long(d.K), long(d.V));
  return buf;
}

// A chunk backward shape: with `states` h0 and dht are given, else zero; dh0 wanted or not.
struct ChunkBwdCase {
  int64_t B, T, H, K, V;
  GateKind gate;
  bool states, want_dh0;
};

// The case groups (cuda_parity_test.cpp: random, chunk backward, linear chunk;
// cuda_parity_golden.cpp: golden files, decoding, device memory).
void random_cases(Report& rep, bool quick);
void state_kernel_cases(Report& rep, bool quick);  // cuda_parity_state.cpp
void bwd_state_cases(Report& rep, bool quick);     // cuda_parity_state.cpp
void intra_kernel_cases(Report& rep, bool quick);  // cuda_parity_intra.cpp
void bwd_dh_cases(Report& rep, bool quick);        // cuda_parity_bwd_dh.cpp
void bwd_wy_gram_cases(Report& rep, bool quick);   // cuda_parity_bwd_wy_gram.cpp
void golden_cases(Report& rep, const std::string& dir);
void decode_cases(Report& rep);
void memory_cases(Report& rep);

}  // namespace kimi::cuda_test
