// Chunkwise forward of the gated delta rule (WY representation + UT transform) and of the gated
// linear recurrence, plus the chunk algebra the chunkwise backward reuses.
// Math: docs/math.md#chunkwise (as FLA's naive_chunk_kda): per chunk, T = (I+A)^{-1} Diag(beta) by
// forward substitution, W = T (exp(G) o K), U = T V, V' = U - W S, O = (scale Q o exp(G)) S +
// tril(Aqk) V', S <- Diag(exp(G_last)) S + (exp(G_last - G) o K)^T V'.
#include <algorithm>
#include <cmath>

#include "core/cpu/delta_rule.h"
#include "core/cpu/delta_rule_internal.h"

namespace kimi::cpu {
namespace detail {

template <class T>
void PairDecay<T>::build(const RowMat<T>& g, const RowMat<T>& G, bool per_channel) {
  L_ = G.rows();
  K_ = G.cols();
  per_channel_ = per_channel;
  if (!per_channel) {
    gamma_ = RowMat<T>::Zero(L_, L_);
    for (int64_t i = 0; i < L_; ++i)
      for (int64_t j = 0; j <= i; ++j) gamma_(i, j) = std::exp(G(i, 0) - G(j, 0));
    return;
  }
  const RowMat<T> step = g.array().exp().matrix();
  const int64_t nb = (L_ + kBlock - 1) / kBlock;
  a_.resize(nb);
  b_.resize(nb);
  diag_.resize(nb);
  for (int64_t I = 0; I < nb; ++I) {
    const int64_t r = I * kBlock, n = std::min(kBlock, L_ - r);
    RowMat<T>& D = diag_[I];
    D.setZero(n * n, K_);
    for (int64_t ii = 0; ii < n; ++ii) {
      D.row(ii * n + ii).setOnes();
      for (int64_t jj = 0; jj < ii; ++jj)
        D.row(ii * n + jj) = D.row((ii - 1) * n + jj).cwiseProduct(step.row(r + ii));
    }
    a_[I].resize(n, K_);
    for (int64_t ii = 0; ii < n; ++ii) a_[I].row(ii) = D.row(ii * n);  // exp(G_i - G_r)
    b_[I] = (-G.topRows(r)).rowwise() + G.row(r);
    b_[I] = b_[I].array().exp();  // apart from the broadcast, so that exp vectorises
  }
}

template <class T>
RowMat<T> PairDecay<T>::gram(const RowMat<T>& P1, const RowMat<T>& P2, bool inclusive) const {
  if (!per_channel_) {
    RowMat<T> X = (P1 * P2.transpose()).cwiseProduct(gamma_);
    if (!inclusive) X.diagonal().setZero();
    return X;
  }
  RowMat<T> X = RowMat<T>::Zero(L_, L_);
  for (size_t I = 0; I < a_.size(); ++I) {
    const int64_t r = I * kBlock, n = a_[I].rows();
    if (r > 0)
      X.block(r, 0, n, r).noalias() =
          a_[I].cwiseProduct(P1.middleRows(r, n)) * b_[I].cwiseProduct(P2.topRows(r)).transpose();
    for (int64_t ii = 0; ii < n; ++ii)
      for (int64_t jj = 0; jj < ii + (inclusive ? 1 : 0); ++jj)
        X(r + ii, r + jj) = (P1.row(r + ii).cwiseProduct(P2.row(r + jj)))
                                .cwiseProduct(diag_[I].row(ii * n + jj))
                                .sum();
  }
  return X;
}

template <class T>
RowMat<T> PairDecay<T>::row_apply(const RowMat<T>& X, const RowMat<T>& P) const {
  if (!per_channel_) return X.cwiseProduct(gamma_) * P;
  RowMat<T> Y = RowMat<T>::Zero(L_, K_);
  for (size_t I = 0; I < a_.size(); ++I) {
    const int64_t r = I * kBlock, n = a_[I].rows();
    if (r > 0)
      Y.middleRows(r, n) =
          a_[I].cwiseProduct(X.block(r, 0, n, r) * b_[I].cwiseProduct(P.topRows(r)));
    for (int64_t ii = 0; ii < n; ++ii)
      for (int64_t jj = 0; jj <= ii; ++jj)
        Y.row(r + ii) += X(r + ii, r + jj) * diag_[I].row(ii * n + jj).cwiseProduct(P.row(r + jj));
  }
  return Y;
}

template <class T>
RowMat<T> PairDecay<T>::col_apply(const RowMat<T>& X, const RowMat<T>& P) const {
  if (!per_channel_) return X.cwiseProduct(gamma_).transpose() * P;
  RowMat<T> Z = RowMat<T>::Zero(L_, K_);
  for (size_t I = 0; I < a_.size(); ++I) {
    const int64_t r = I * kBlock, n = a_[I].rows();
    if (r > 0)
      Z.topRows(r) += b_[I].cwiseProduct(X.block(r, 0, n, r).transpose() *
                                         a_[I].cwiseProduct(P.middleRows(r, n)));
    for (int64_t ii = 0; ii < n; ++ii)
      for (int64_t jj = 0; jj <= ii; ++jj)
        Z.row(r + jj) += X(r + ii, r + jj) * diag_[I].row(ii * n + jj).cwiseProduct(P.row(r + ii));
  }
  return Z;
}

// The chunk's per-token log decays g (L x K; scalar gates broadcast, zero without a gate) and
// G_i = sum_{j<=i} g_j inside the chunk.
template <class T>
void chunk_log_decay(const HeadIndex& ix, int64_t t0, int64_t L, const T* g_in, RowMat<T>& g,
                     RowMat<T>& G) {
  const RecurrenceDims& d = ix.d;
  g.setZero(L, d.K);
  if (d.gate == GateKind::kPerChannel) g = rows(g_in + ix.gate(t0), L, d.K, d.H * d.K);
  if (d.gate == GateKind::kScalar)
    for (int64_t i = 0; i < L; ++i) g.row(i).setConstant(g_in[ix.gate(t0 + i)]);
  G = g;
  for (int64_t i = 1; i < L; ++i) G.row(i) += G.row(i - 1);
}

template <class T>
void ChunkFwd<T>::load(const HeadIndex& ix, int64_t t0, int64_t len, bool is_delta, const T* q,
                       const T* k, const T* v, const T* g_in, const T* beta_in) {
  const RecurrenceDims& d = ix.d;
  L = len;
  delta = is_delta;
  Q = rows(q + ix.qk(t0), L, d.K, d.H * d.K);
  K = rows(k + ix.qk(t0), L, d.K, d.H * d.K);
  V = rows(v + ix.vo(t0), L, d.V, d.H * d.V);
  chunk_log_decay(ix, t0, L, g_in, g, G);
  eG = G.array().exp().matrix();
  GqW.resize(delta ? 2 * L : L, d.K);
  GqW.topRows(L) = (T(d.scale) * eG).cwiseProduct(Q);
  Gk = eG.cwiseProduct(K);
  // exp(G_last - G): a difference, never exp(G_last) * exp(-G).
  Kd = (-G).rowwise() + G.row(L - 1);
  Kd = Kd.array().exp() * K.array();
  pd.build(g, G, d.gate == GateKind::kPerChannel);
  Aqk = T(d.scale) * pd.gram(Q, K, true);
  if (!delta) return;
  beta = Eigen::Map<const ColVec<T>, 0, Eigen::InnerStride<>>(beta_in + ix.tok(t0), L,
                                                              Eigen::InnerStride<>(d.H));
  Akk = pd.gram(K, K, false);
  A = beta.asDiagonal() * Akk;
  // (I + A) [W U] = Diag(beta) [Gk V] by forward substitution: UnitLower reads only A's strict
  // lower triangle and takes the diagonal as 1.
  RowMat<T> R(L, d.K + d.V);
  R << beta.asDiagonal() * Gk, beta.asDiagonal() * V;
  A.template triangularView<Eigen::UnitLower>().solveInPlace(R);
  GqW.bottomRows(L) = R.leftCols(d.K);
  U = R.rightCols(d.V);
}

template <class T>
void ChunkFwd<T>::solve(const RowMat<T>& S) {
  if (delta)
    Vp = U - W() * S;
  else
    Vp = V;
}

template <class T>
void ChunkFwd<T>::output(const RowMat<T>& S, RowsMap<T> O) {
  if (delta) {
    const RowMat<T> P = GqW * S;  // [Gq S; W S]
    Vp = U - P.bottomRows(L);
    O = P.topRows(L);
  } else {
    Vp = V;
    O.noalias() = GqW * S;
  }
  O.noalias() += Aqk.template triangularView<Eigen::Lower>() * Vp;
}

template <class T>
void ChunkFwd<T>::advance(RowMat<T>& S) const {
  S = eG.row(L - 1).transpose().asDiagonal() * S;
  S.noalias() += Kd.transpose() * Vp;
}

template class PairDecay<float>;
template class PairDecay<double>;
template struct ChunkFwd<float>;
template struct ChunkFwd<double>;

}  // namespace detail

namespace {

using detail::HeadIndex;
using detail::RowMat;

template <class T>
void chunk_fwd_head(const HeadIndex& ix, bool delta, const T* q, const T* k, const T* v, const T* g,
                    const T* beta, const T* h0, T* o, T* ht) {
  const RecurrenceDims& d = ix.d;
  RowMat<T> S = RowMat<T>::Zero(d.K, d.V);
  if (h0) S = detail::rows(h0 + ix.state(), d.K, d.V, d.V);
  detail::ChunkFwd<T> cf;
  for (int64_t t0 = 0; t0 < d.T; t0 += d.chunk) {
    const int64_t L = std::min(d.chunk, d.T - t0);
    cf.load(ix, t0, L, delta, q, k, v, g, beta);
    cf.output(S, detail::rows(o + ix.vo(t0), L, d.V, d.H * d.V));
    cf.advance(S);
  }
  if (ht) detail::rows(ht + ix.state(), d.K, d.V, d.V) = S;
}

template <class T>
void chunk_fwd(const RecurrenceDims& d, bool delta, const T* q, const T* k, const T* v, const T* g,
               const T* beta, const T* h0, T* o, T* ht) {
  detail::check_dims(d, g);
  detail::for_each_head(
      d, [&](const HeadIndex& ix) { chunk_fwd_head(ix, delta, q, k, v, g, beta, h0, o, ht); });
}

}  // namespace

template <class T>
void delta_rule_chunk_fwd(const RecurrenceDims& d, const T* q, const T* k, const T* v, const T* g,
                          const T* beta, const T* h0, T* o, T* ht) {
  chunk_fwd(d, true, q, k, v, g, beta, h0, o, ht);
}

template <class T>
void linear_recurrence_chunk_fwd(const RecurrenceDims& d, const T* q, const T* k, const T* v,
                                 const T* g, const T* h0, T* o, T* ht) {
  chunk_fwd<T>(d, false, q, k, v, g, nullptr, h0, o, ht);
}

#define KIMI_INSTANTIATE(T)                                                                  \
  template void delta_rule_chunk_fwd<T>(const RecurrenceDims&, const T*, const T*, const T*, \
                                        const T*, const T*, const T*, T*, T*);               \
  template void linear_recurrence_chunk_fwd<T>(const RecurrenceDims&, const T*, const T*,    \
                                               const T*, const T*, const T*, T*, T*);
KIMI_INSTANTIATE(float)
KIMI_INSTANTIATE(double)
#undef KIMI_INSTANTIATE

}  // namespace kimi::cpu
