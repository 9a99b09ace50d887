// Chunkwise backward of the gated delta rule and of the gated linear recurrence: analytic
// gradients through the chunk algebra of docs/math.md#chunkwise (intra-chunk matrices, the UT
// forward-substitution solve, the state passing). Chunk-boundary states come from one chunk
// forward pass; each chunk's internals are recomputed (ChunkFwd), never run backwards.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/delta_rule.h"
#include "core/cpu/delta_rule_internal.h"

namespace kimi::cpu {
namespace {

using detail::ChunkFwd;
using detail::ColVec;
using detail::HeadIndex;
using detail::RowMat;
using detail::RowVec;

template <class T>
struct Grads {
  T *dq, *dk, *dv, *dg, *dbeta;
};

// Gradients of one chunk, accumulated in ChunkGrad then written once.
template <class T>
struct ChunkGrad {
  RowMat<T> dQ, dK, dV, dG;
  ColVec<T> dbeta;
};

// Through the UT solve: (I+A) W = Diag(beta) Gk, (I+A) U = Diag(beta) V, A = Diag(beta) Akk:
//   dR = (I+A)^{-T} dX (backward substitution), dA = -strict_lower(dR_W W^T + dR_U U^T),
//   dbeta = rowsum(dR_W o Gk + dR_U o V + dA o Akk), dGk = Diag(beta) dR_W, dV = Diag(beta) dR_U,
//   dAkk = Diag(beta) dA; then Akk = gram(K, K) with pairwise decays gives dK and dG.
template <class T>
void ut_solve_bwd(const ChunkFwd<T>& cf, const RowMat<T>& dW, const RowMat<T>& dU,
                  ChunkGrad<T>& gr) {
  const auto Mt = cf.A.template triangularView<Eigen::UnitLower>().transpose();
  const RowMat<T> dRW = Mt.solve(dW);
  const RowMat<T> dRU = Mt.solve(dU);
  RowMat<T> dA = -(dRW * cf.W().transpose() + dRU * cf.U.transpose());
  dA = dA.template triangularView<Eigen::StrictlyLower>();
  gr.dbeta = dRW.cwiseProduct(cf.Gk).rowwise().sum() + dRU.cwiseProduct(cf.V).rowwise().sum() +
             dA.cwiseProduct(cf.Akk).rowwise().sum();
  const RowMat<T> dGk = cf.beta.asDiagonal() * dRW;
  gr.dV = cf.beta.asDiagonal() * dRU;
  const RowMat<T> dAkk = cf.beta.asDiagonal() * dA;
  const RowMat<T> r = cf.pd.row_apply(dAkk, cf.K);
  const RowMat<T> c = cf.pd.col_apply(dAkk, cf.K);
  gr.dK += r + c;
  gr.dG += cf.K.cwiseProduct(r - c);
  // Gk = exp(G) o K
  gr.dK += cf.eG.cwiseProduct(dGk);
  gr.dG += dGk.cwiseProduct(cf.Gk);
}

// One chunk, given its incoming state S, dO (L x V) and dS_out = dL/dS after the chunk.
// Forward: O = Gq S + Aqk V', S_out = Diag(eL) S + Kd^T V', V' = U - W S (or V). Backward:
//   dV' = Aqk^T dO + Kd dS_out; dAqk = tril(dO V'^T); dGq = dO S^T; dKd = V' dS_out^T;
//   deL = rowsum(dS_out o S); dS_in = Gq^T dO + Diag(eL) dS_out - W^T dV';
//   dW = -dV' S^T, dU = dV' (then ut_solve_bwd).
// Returns dS_in.
template <class T>
RowMat<T> chunk_bwd(const ChunkFwd<T>& cf, const RowMat<T>& S, const RowMat<T>& dO,
                    const RowMat<T>& dSout, T scale, ChunkGrad<T>& gr) {
  const int64_t L = cf.L;
  const RowMat<T> dVp =
      cf.Aqk.transpose().template triangularView<Eigen::Upper>() * dO + cf.Kd * dSout;
  const RowMat<T> dAqk = (dO * cf.Vp.transpose()).template triangularView<Eigen::Lower>();
  // [Gq; W] S is one product in the forward, so its gradients are one product each way:
  // d[Gq; W] = [dO; -dV'] S^T, dS_in = [Gq; W]^T [dO; -dV'] + Diag(eL) dS_out.
  RowMat<T> dP(cf.GqW.rows(), dO.cols());
  dP.topRows(L) = dO;
  if (cf.delta) dP.bottomRows(L) = -dVp;
  const RowMat<T> dGqW = dP * S.transpose();
  const RowMat<T> dKd = cf.Vp * dSout.transpose();
  const auto eL = cf.eG.row(L - 1);
  RowMat<T> dSin = cf.GqW.transpose() * dP;
  dSin += eL.transpose().asDiagonal() * dSout;

  // Aqk = scale gram(Q, K): dQ_i = scale sum_j dAqk_ij Gamma_ij k_j (and dK alike);
  // d/dG_i picks q_i o dQ_i, d/dG_j picks -k_j o dK_j.
  gr.dQ = scale * cf.pd.row_apply(dAqk, cf.K);
  gr.dK = scale * cf.pd.col_apply(dAqk, cf.Q);
  gr.dG = cf.Q.cwiseProduct(gr.dQ) - cf.K.cwiseProduct(gr.dK);
  if (cf.delta)
    ut_solve_bwd(cf, RowMat<T>(dGqW.bottomRows(L)), dVp, gr);
  else
    gr.dV = dVp;
  // Gq = scale exp(G) o Q
  const auto dGq = dGqW.topRows(L);
  gr.dQ += scale * cf.eG.cwiseProduct(dGq);
  gr.dG += dGq.cwiseProduct(cf.Gq());
  // Kd = exp(G_last - G) o K; S_out's Diag(exp(G_last)) S
  const RowMat<T> dKdKd = dKd.cwiseProduct(cf.Kd);
  RowMat<T> decay_to_end = (-cf.G).rowwise() + cf.G.row(L - 1);
  gr.dK += decay_to_end.array().exp().matrix().cwiseProduct(dKd);
  gr.dG -= dKdKd;
  gr.dG.row(L - 1) +=
      dKdKd.colwise().sum() + dSout.cwiseProduct(S).rowwise().sum().transpose().cwiseProduct(eL);
  return dSin;
}

// dg_j = sum_{i>=j} dG_i (G is the inclusive cumulative sum inside the chunk).
template <class T>
void write_gate_grad(const HeadIndex& ix, int64_t t0, const RowMat<T>& dG, T* dg) {
  const RecurrenceDims& d = ix.d;
  RowVec<T> acc = RowVec<T>::Zero(d.K);
  for (int64_t i = dG.rows() - 1; i >= 0; --i) {
    acc += dG.row(i);
    T* out = dg + ix.gate(t0 + i);
    if (d.gate == GateKind::kPerChannel)
      std::copy(acc.data(), acc.data() + d.K, out);
    else
      out[0] = acc.sum();
  }
}

template <class T>
void write_chunk(const HeadIndex& ix, int64_t t0, const ChunkGrad<T>& gr, bool delta,
                 const Grads<T>& out) {
  const RecurrenceDims& d = ix.d;
  const int64_t L = gr.dQ.rows();
  detail::rows(out.dq + ix.qk(t0), L, d.K, d.H * d.K) = gr.dQ;
  detail::rows(out.dk + ix.qk(t0), L, d.K, d.H * d.K) = gr.dK;
  detail::rows(out.dv + ix.vo(t0), L, d.V, d.H * d.V) = gr.dV;
  if (delta)
    for (int64_t i = 0; i < L; ++i) out.dbeta[ix.tok(t0 + i)] = gr.dbeta(i);
  if (d.gate != GateKind::kNone) write_gate_grad(ix, t0, gr.dG, out.dg);
}

template <class T>
void chunk_bwd_head(const HeadIndex& ix, bool delta, const T* q, const T* k, const T* v, const T* g,
                    const T* beta, const T* h0, const T* do_, const T* dht, const Grads<T>& out,
                    T* dh0) {
  const RecurrenceDims& d = ix.d;
  const int64_t C = d.chunk, nc = (d.T + C - 1) / C;
  std::vector<RowMat<T>> states(nc);
  RowMat<T> S = RowMat<T>::Zero(d.K, d.V);
  if (h0) S = detail::rows(h0 + ix.state(), d.K, d.V, d.V);
  ChunkFwd<T> cf;
  for (int64_t c = 0; c < nc; ++c) {
    states[c] = S;
    cf.load(ix, c * C, std::min(C, d.T - c * C), delta, q, k, v, g, beta);
    cf.solve(S);
    cf.advance(S);
  }
  RowMat<T> dS = RowMat<T>::Zero(d.K, d.V);
  if (dht) dS = detail::rows(dht + ix.state(), d.K, d.V, d.V);
  ChunkGrad<T> gr;
  for (int64_t c = nc - 1; c >= 0; --c) {
    const int64_t t0 = c * C, L = std::min(C, d.T - t0);
    cf.load(ix, t0, L, delta, q, k, v, g, beta);
    cf.solve(states[c]);
    const RowMat<T> dO = detail::rows(do_ + ix.vo(t0), L, d.V, d.H * d.V);
    dS = chunk_bwd(cf, states[c], dO, dS, T(d.scale), gr);
    write_chunk(ix, t0, gr, delta, out);
  }
  if (dh0) detail::rows(dh0 + ix.state(), d.K, d.V, d.V) = dS;
}

template <class T>
void chunk_bwd_all(const RecurrenceDims& d, bool delta, const T* q, const T* k, const T* v,
                   const T* g, const T* beta, const T* h0, const T* do_, const T* dht,
                   const Grads<T>& out, T* dh0) {
  detail::check_dims(d, g);
  detail::for_each_head(d, [&](const HeadIndex& ix) {
    chunk_bwd_head(ix, delta, q, k, v, g, beta, h0, do_, dht, out, dh0);
  });
}

}  // namespace

template <class T>
void delta_rule_chunk_bwd(const RecurrenceDims& d, const T* q, const T* k, const T* v, const T* g,
                          const T* beta, const T* h0, const T* do_, const T* dht, T* dq, T* dk,
                          T* dv, T* dg, T* dbeta, T* dh0) {
  chunk_bwd_all(d, true, q, k, v, g, beta, h0, do_, dht, Grads<T>{dq, dk, dv, dg, dbeta}, dh0);
}

template <class T>
void linear_recurrence_chunk_bwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                                 const T* g, const T* h0, const T* do_, const T* dht, T* dq, T* dk,
                                 T* dv, T* dg, T* dh0) {
  chunk_bwd_all<T>(d, false, q, k, v, g, nullptr, h0, do_, dht, Grads<T>{dq, dk, dv, dg, nullptr},
                   dh0);
}

#define KIMI_INSTANTIATE(T)                                                                       \
  template void delta_rule_chunk_bwd<T>(const RecurrenceDims&, const T*, const T*, const T*,      \
                                        const T*, const T*, const T*, const T*, const T*, T*, T*, \
                                        T*, T*, T*, T*);                                          \
  template void linear_recurrence_chunk_bwd<T>(const RecurrenceDims&, const T*, const T*,         \
                                               const T*, const T*, const T*, const T*, const T*,  \
                                               T*, T*, T*, T*, T*);
KIMI_INSTANTIATE(float)
KIMI_INSTANTIATE(double)
#undef KIMI_INSTANTIATE

}  // namespace kimi::cpu
