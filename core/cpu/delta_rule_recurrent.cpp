// Recurrent (token-by-token) form of the gated delta rule and of the gated linear recurrence,
// forward and backward: the CPU oracle the chunkwise form is tested against.
// Math: docs/math.md#mixers (forward) and docs/math.md#recurrent-backward (backward); FLA's
// naive_recurrent_* references.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/delta_rule.h"
#include "core/cpu/delta_rule_internal.h"

namespace kimi::cpu {
namespace {

using detail::HeadIndex;

// Per-head inputs of one recurrence; `beta == nullptr` means the linear recurrence.
template <class T>
struct Inputs {
  const T *q, *k, *v, *g, *beta, *h0;
};

// S (K x V row-major) <- Diag(exp(g)) S; `g` is K values (per channel) or one (scalar).
template <class T>
void decay_state(const RecurrenceDims& d, const T* g, T* S) {
  if (d.gate == GateKind::kNone) return;
  for (int64_t i = 0; i < d.K; ++i) {
    const T a = std::exp(d.gate == GateKind::kPerChannel ? g[i] : g[0]);
    T* row = S + i * d.V;
    for (int64_t j = 0; j < d.V; ++j) row[j] *= a;
  }
}

// kS = S^T k (V values).
template <class T>
void state_t_times(const RecurrenceDims& d, const T* S, const T* k, T* kS) {
  std::fill(kS, kS + d.V, T(0));
  for (int64_t i = 0; i < d.K; ++i) {
    const T ki = k[i];
    const T* row = S + i * d.V;
    for (int64_t j = 0; j < d.V; ++j) kS[j] += ki * row[j];
  }
}

// The first half of step t: S <- D_t S (S' afterwards); kS = S'^T k_t; u = beta (v - kS) for
// the delta rule, u = v for the linear recurrence.
template <class T>
void decay_and_update_vector(const RecurrenceDims& d, const HeadIndex& ix, const Inputs<T>& in,
                             int64_t t, T* S, T* kS, T* u) {
  const T* vt = in.v + ix.vo(t);
  if (in.g) decay_state(d, in.g + ix.gate(t), S);
  if (in.beta) {
    state_t_times(d, S, in.k + ix.qk(t), kS);
    const T b = in.beta[ix.tok(t)];
    for (int64_t j = 0; j < d.V; ++j) u[j] = b * (vt[j] - kS[j]);
  } else {
    std::copy(vt, vt + d.V, u);
  }
}

// One whole step: S <- S' + k_t u^T.
template <class T>
void step(const RecurrenceDims& d, const HeadIndex& ix, const Inputs<T>& in, int64_t t, T* S, T* kS,
          T* u) {
  decay_and_update_vector(d, ix, in, t, S, kS, u);
  const T* kt = in.k + ix.qk(t);
  for (int64_t i = 0; i < d.K; ++i) {
    T* row = S + i * d.V;
    for (int64_t j = 0; j < d.V; ++j) row[j] += kt[i] * u[j];
  }
}

template <class T>
void init_state(const RecurrenceDims& d, const HeadIndex& ix, const T* h0, std::vector<T>& S) {
  S.assign(d.K * d.V, T(0));
  if (h0) std::copy(h0 + ix.state(), h0 + ix.state() + d.K * d.V, S.begin());
}

template <class T>
void fwd_head(const RecurrenceDims& d, const HeadIndex& ix, const Inputs<T>& in, T* o, T* ht) {
  std::vector<T> S, kS(d.V), u(d.V);
  init_state(d, ix, in.h0, S);
  for (int64_t t = 0; t < d.T; ++t) {
    step(d, ix, in, t, S.data(), kS.data(), u.data());
    // o_t = S_t^T (scale q_t)
    state_t_times(d, S.data(), in.q + ix.qk(t), o + ix.vo(t));
    for (int64_t j = 0; j < d.V; ++j) o[ix.vo(t) + j] *= T(d.scale);
  }
  if (ht) std::copy(S.begin(), S.end(), ht + ix.state());
}

template <class T>
struct Grads {
  T *dq, *dk, *dv, *dg, *dbeta;
};

// Backward of one step (docs/math.md#recurrent-backward). Sp = S_{t-1}, St = S_t; dS holds dL/dS_t
// on entry and dL/dS_{t-1} on exit. Scratch: Sd (K*V), kS, u, du (V).
//   dS += (scale q) do^T; dq = scale S_t do; dk = dS u; du = dS^T k;
//   delta: dv = beta du; dbeta = du.(v - S'^T k); dk -= beta S' du; dS' = dS - beta k du^T
//   linear: dv = du; dS' = dS.   dg = rowsum(dS' o S'); dS_{t-1} = D_t dS'.
template <class T>
void step_bwd(const RecurrenceDims& d, const HeadIndex& ix, const Inputs<T>& in, int64_t t,
              const T* Sp, const T* St, const T* do_, const Grads<T>& gr, T* dS, T* Sd, T* kS, T* u,
              T* du) {
  const int64_t K = d.K, V = d.V;
  const T scale = T(d.scale);
  const T *qt = in.q + ix.qk(t), *kt = in.k + ix.qk(t), *dot = do_ + ix.vo(t);
  std::copy(Sp, Sp + K * V, Sd);
  decay_and_update_vector(d, ix, in, t, Sd, kS, u);  // Sd = S'
  T* dqt = gr.dq + ix.qk(t);
  T* dkt = gr.dk + ix.qk(t);
  std::fill(du, du + V, T(0));
  for (int64_t i = 0; i < K; ++i) {
    T* dSi = dS + i * V;
    const T* Sti = St + i * V;
    T aq = 0, ak = 0;
    for (int64_t j = 0; j < V; ++j) {
      dSi[j] += scale * qt[i] * dot[j];
      aq += Sti[j] * dot[j];
      ak += dSi[j] * u[j];
      du[j] += dSi[j] * kt[i];
    }
    dqt[i] = scale * aq;
    dkt[i] = ak;
  }
  T* dvt = gr.dv + ix.vo(t);
  if (in.beta) {
    const T b = in.beta[ix.tok(t)];
    const T* vt = in.v + ix.vo(t);
    T db = 0;
    for (int64_t j = 0; j < V; ++j) {
      dvt[j] = b * du[j];
      db += du[j] * (vt[j] - kS[j]);
    }
    gr.dbeta[ix.tok(t)] = db;
    for (int64_t i = 0; i < K; ++i) {
      T* dSi = dS + i * V;
      const T* Si = Sd + i * V;
      T acc = 0;
      for (int64_t j = 0; j < V; ++j) {
        acc += Si[j] * du[j];
        dSi[j] -= b * kt[i] * du[j];
      }
      dkt[i] -= b * acc;
    }
  } else {
    std::copy(du, du + V, dvt);
  }
  if (in.g) {
    T* dgt = gr.dg + ix.gate(t);
    if (d.gate == GateKind::kScalar) dgt[0] = 0;
    for (int64_t i = 0; i < K; ++i) {
      T acc = 0;
      for (int64_t j = 0; j < V; ++j) acc += dS[i * V + j] * Sd[i * V + j];
      if (d.gate == GateKind::kPerChannel)
        dgt[i] = acc;
      else
        dgt[0] += acc;
    }
    decay_state(d, in.g + ix.gate(t), dS);
  }
}

// States are kept every `chunk` steps; inside a chunk they are recomputed forwards into
// `states` (chunk+1 of them) so no step is ever inverted.
template <class T>
void bwd_head(const RecurrenceDims& d, const HeadIndex& ix, const Inputs<T>& in, const T* do_,
              const T* dht, const Grads<T>& gr, T* dh0) {
  const int64_t KV = d.K * d.V, C = d.chunk, nc = (d.T + C - 1) / C;
  std::vector<T> S, kS(d.V), u(d.V), du(d.V), Sd(KV), dS(KV, T(0));
  std::vector<T> ckpt(nc * KV), states((C + 1) * KV);
  init_state(d, ix, in.h0, S);
  for (int64_t t = 0; t < d.T; ++t) {
    if (t % C == 0) std::copy(S.begin(), S.end(), ckpt.begin() + (t / C) * KV);
    step(d, ix, in, t, S.data(), kS.data(), u.data());
  }
  if (dht) std::copy(dht + ix.state(), dht + ix.state() + KV, dS.begin());
  for (int64_t c = nc - 1; c >= 0; --c) {
    const int64_t t0 = c * C, t1 = std::min(d.T, t0 + C);
    std::copy(ckpt.begin() + c * KV, ckpt.begin() + (c + 1) * KV, states.begin());
    for (int64_t t = t0; t < t1; ++t) {
      T* next = states.data() + (t - t0 + 1) * KV;
      std::copy(next - KV, next, next);
      step(d, ix, in, t, next, kS.data(), u.data());
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const T* Sp = states.data() + (t - t0) * KV;
      step_bwd(d, ix, in, t, Sp, Sp + KV, do_, gr, dS.data(), Sd.data(), kS.data(), u.data(),
               du.data());
    }
  }
  if (dh0) std::copy(dS.begin(), dS.end(), dh0 + ix.state());
}

}  // namespace

template <class T>
void delta_rule_recurrent_fwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                              const T* g, const T* beta, const T* h0, T* o, T* ht) {
  detail::check_dims(d, g);
  const Inputs<T> in{q, k, v, g, beta, h0};
  detail::for_each_head(d, [&](const HeadIndex& ix) { fwd_head(d, ix, in, o, ht); });
}

template <class T>
void delta_rule_recurrent_bwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                              const T* g, const T* beta, const T* h0, const T* do_, const T* dht,
                              T* dq, T* dk, T* dv, T* dg, T* dbeta, T* dh0) {
  detail::check_dims(d, g);
  const Inputs<T> in{q, k, v, g, beta, h0};
  const Grads<T> gr{dq, dk, dv, dg, dbeta};
  detail::for_each_head(d, [&](const HeadIndex& ix) { bwd_head(d, ix, in, do_, dht, gr, dh0); });
}

template <class T>
void linear_recurrence_recurrent_fwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                                     const T* g, const T* h0, T* o, T* ht) {
  detail::check_dims(d, g);
  const Inputs<T> in{q, k, v, g, nullptr, h0};
  detail::for_each_head(d, [&](const HeadIndex& ix) { fwd_head(d, ix, in, o, ht); });
}

template <class T>
void linear_recurrence_recurrent_bwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                                     const T* g, const T* h0, const T* do_, const T* dht, T* dq,
                                     T* dk, T* dv, T* dg, T* dh0) {
  detail::check_dims(d, g);
  const Inputs<T> in{q, k, v, g, nullptr, h0};
  const Grads<T> gr{dq, dk, dv, dg, nullptr};
  detail::for_each_head(d, [&](const HeadIndex& ix) { bwd_head(d, ix, in, do_, dht, gr, dh0); });
}

#define KIMI_INSTANTIATE(T)                                                                       \
  template void delta_rule_recurrent_fwd<T>(const RecurrenceDims&, const T*, const T*, const T*,  \
                                            const T*, const T*, const T*, T*, T*);                \
  template void delta_rule_recurrent_bwd<T>(const RecurrenceDims&, const T*, const T*, const T*,  \
                                            const T*, const T*, const T*, const T*, const T*, T*, \
                                            T*, T*, T*, T*, T*);                                  \
  template void linear_recurrence_recurrent_fwd<T>(const RecurrenceDims&, const T*, const T*,     \
                                                   const T*, const T*, const T*, T*, T*);         \
  template void linear_recurrence_recurrent_bwd<T>(const RecurrenceDims&, const T*, const T*,     \
                                                   const T*, const T*, const T*, const T*,        \
                                                   const T*, T*, T*, T*, T*, T*);
KIMI_INSTANTIATE(float)
KIMI_INSTANTIATE(double)
#undef KIMI_INSTANTIATE

}  // namespace kimi::cpu
