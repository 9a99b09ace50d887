// Causal GQA softmax attention on the CPU, tile by tile (FlashAttention-2's algorithm): the
// forward keeps a running max and sum per query row, the backward recomputes P from the saved
// log-sum-exp. Only one query tile x key tile of scores exists at a time per (batch, head).
#include "core/cpu/attention.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/parallel.h"
#include "core/tensor/error.h"

namespace kimi::cpu {
namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColVec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <class T>
using RowsMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstRowsMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

constexpr int64_t kTileQ = 64;
constexpr int64_t kTileK = 64;

void check_dims(const AttentionDims& d) {
  KIMI_CHECK(d.B >= 0 && d.Tq >= 0 && d.Hq > 0 && d.Hkv > 0 && d.D > 0 && d.Dv > 0,
             "attention: bad dims B={} Tq={} Hq={} Hkv={} D={} Dv={}", d.B, d.Tq, d.Hq, d.Hkv, d.D,
             d.Dv);
  KIMI_CHECK(d.Hq % d.Hkv == 0, "attention: Hq={} is not a multiple of Hkv={}", d.Hq, d.Hkv);
  KIMI_CHECK(d.Tk >= d.Tq, "attention: causal needs Tk >= Tq, got Tk={} Tq={}", d.Tk, d.Tq);
}

// Threads only pay off above ~1M multiply-adds of work (parallel.h).
bool worth_threads(const AttentionDims& d) {
  return d.B * d.Hq * d.Tq * d.Tk * (d.D + d.Dv) >= (int64_t{1} << 21);
}

template <class T>
ConstRowsMap<T> rows(const T* base, int64_t n, int64_t D, int64_t stride) {
  return ConstRowsMap<T>(base, n, D, Eigen::OuterStride<>(stride));
}
template <class T>
RowsMap<T> rows(T* base, int64_t n, int64_t D, int64_t stride) {
  return RowsMap<T>(base, n, D, Eigen::OuterStride<>(stride));
}

// Scaled scores of query rows [i0, i0+nq) against keys [j0, j0+nk), future keys set to -inf.
template <class T, class Q, class K>
RowMat<T> masked_scores(const AttentionDims& d, const Q& Qt, const K& Kt, int64_t i0, int64_t j0) {
  RowMat<T> S = T(d.scale) * (Qt * Kt.transpose());
  const int64_t off = d.Tk - d.Tq;
  for (int64_t r = 0; r < S.rows(); ++r) {
    const int64_t first_masked = i0 + r + off + 1 - j0;  // column index of the first future key
    for (int64_t c = std::max<int64_t>(first_masked, 0); c < S.cols(); ++c)
      S(r, c) = -std::numeric_limits<T>::infinity();
  }
  return S;
}

template <class T>
void fwd_head(const AttentionDims& d, int64_t b, int64_t h, const T* q, const T* k, const T* v,
              T* o, T* lse) {
  const int64_t hk = h / (d.Hq / d.Hkv), off = d.Tk - d.Tq;
  const auto Q = rows(q + (b * d.Tq * d.Hq + h) * d.D, d.Tq, d.D, d.Hq * d.D);
  const auto K = rows(k + (b * d.Tk * d.Hkv + hk) * d.D, d.Tk, d.D, d.Hkv * d.D);
  const auto V = rows(v + (b * d.Tk * d.Hkv + hk) * d.Dv, d.Tk, d.Dv, d.Hkv * d.Dv);
  auto O = rows(o + (b * d.Tq * d.Hq + h) * d.Dv, d.Tq, d.Dv, d.Hq * d.Dv);
  T* lse_bh = lse + (b * d.Hq + h) * d.Tq;
  for (int64_t i0 = 0; i0 < d.Tq; i0 += kTileQ) {
    const int64_t nq = std::min(kTileQ, d.Tq - i0), kend = i0 + nq + off;
    ColVec<T> m = ColVec<T>::Constant(nq, -std::numeric_limits<T>::infinity());
    ColVec<T> l = ColVec<T>::Zero(nq);
    RowMat<T> acc = RowMat<T>::Zero(nq, d.Dv);
    for (int64_t j0 = 0; j0 < kend; j0 += kTileK) {
      const int64_t nk = std::min(kTileK, kend - j0);
      RowMat<T> S = masked_scores<T>(d, Q.middleRows(i0, nq), K.middleRows(j0, nk), i0, j0);
      // Online softmax: every row sees key 0 in the first tile, so m is finite from then on.
      const ColVec<T> m_new = m.cwiseMax(S.rowwise().maxCoeff());
      const ColVec<T> corr = (m - m_new).array().exp();
      S = (S.colwise() - m_new).array().exp();
      l = l.cwiseProduct(corr) + S.rowwise().sum();
      acc = corr.asDiagonal() * acc;
      acc.noalias() += S * V.middleRows(j0, nk);
      m = m_new;
    }
    O.middleRows(i0, nq) = l.cwiseInverse().asDiagonal() * acc;
    for (int64_t r = 0; r < nq; ++r) lse_bh[i0 + r] = m(r) + std::log(l(r));
  }
}

// One (batch, q head), accumulating into its kv head's dK, dV (Tk rows each):
//   P = exp(scale Q K^T - lse); dV += P^T dO; dP = dO V^T; dS = P o (dP - rowdot(dO, O));
//   dQ = scale dS K; dK += scale dS^T Q.
template <class T>
void bwd_head(const AttentionDims& d, int64_t b, int64_t h, const T* q, const T* k, const T* v,
              const T* o, const T* lse, const T* do_, T* dq, RowMat<T>& dK, RowMat<T>& dV) {
  const int64_t hk = h / (d.Hq / d.Hkv), off = d.Tk - d.Tq;
  const T scale = T(d.scale);
  const auto Q = rows(q + (b * d.Tq * d.Hq + h) * d.D, d.Tq, d.D, d.Hq * d.D);
  const auto K = rows(k + (b * d.Tk * d.Hkv + hk) * d.D, d.Tk, d.D, d.Hkv * d.D);
  const auto V = rows(v + (b * d.Tk * d.Hkv + hk) * d.Dv, d.Tk, d.Dv, d.Hkv * d.Dv);
  const auto O = rows(o + (b * d.Tq * d.Hq + h) * d.Dv, d.Tq, d.Dv, d.Hq * d.Dv);
  const auto dO = rows(do_ + (b * d.Tq * d.Hq + h) * d.Dv, d.Tq, d.Dv, d.Hq * d.Dv);
  auto dQ = rows(dq + (b * d.Tq * d.Hq + h) * d.D, d.Tq, d.D, d.Hq * d.D);
  const T* lse_bh = lse + (b * d.Hq + h) * d.Tq;
  for (int64_t i0 = 0; i0 < d.Tq; i0 += kTileQ) {
    const int64_t nq = std::min(kTileQ, d.Tq - i0), kend = i0 + nq + off;
    const auto dOt = dO.middleRows(i0, nq);
    const ColVec<T> Di = dOt.cwiseProduct(O.middleRows(i0, nq)).rowwise().sum();
    const Eigen::Map<const ColVec<T>> lse_t(lse_bh + i0, nq);
    RowMat<T> dQt = RowMat<T>::Zero(nq, d.D);
    for (int64_t j0 = 0; j0 < kend; j0 += kTileK) {
      const int64_t nk = std::min(kTileK, kend - j0);
      const auto Kt = K.middleRows(j0, nk);
      RowMat<T> P = masked_scores<T>(d, Q.middleRows(i0, nq), Kt, i0, j0);
      P = (P.colwise() - lse_t).array().exp();  // exp(-inf) = 0 on masked entries
      dV.middleRows(j0, nk).noalias() += P.transpose() * dOt;
      RowMat<T> dS = dOt * V.middleRows(j0, nk).transpose();
      dS = P.cwiseProduct(dS.colwise() - Di);
      dQt.noalias() += scale * (dS * Kt);
      dK.middleRows(j0, nk).noalias() += scale * (dS.transpose() * Q.middleRows(i0, nq));
    }
    dQ.middleRows(i0, nq) = dQt;
  }
}

}  // namespace

template <class T>
void causal_attention_fwd(const AttentionDims& d, const T* q, const T* k, const T* v, T* o,
                          T* lse) {
  check_dims(d);
  for_each_item(d.B * d.Hq, worth_threads(d),
                [&](int64_t bh) { fwd_head(d, bh / d.Hq, bh % d.Hq, q, k, v, o, lse); });
}

// Parallel over (batch, kv head): the query heads of one group add into the same dK, dV.
template <class T>
void causal_attention_bwd(const AttentionDims& d, const T* q, const T* k, const T* v, const T* o,
                          const T* lse, const T* do_, T* dq, T* dk, T* dv) {
  check_dims(d);
  const int64_t group = d.Hq / d.Hkv;
  for_each_item(d.B * d.Hkv, worth_threads(d), [&](int64_t bh) {
    const int64_t b = bh / d.Hkv, hk = bh % d.Hkv;
    RowMat<T> dK = RowMat<T>::Zero(d.Tk, d.D), dV = RowMat<T>::Zero(d.Tk, d.Dv);
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
      bwd_head(d, b, h, q, k, v, o, lse, do_, dq, dK, dV);
    rows(dk + (b * d.Tk * d.Hkv + hk) * d.D, d.Tk, d.D, d.Hkv * d.D) = dK;
    rows(dv + (b * d.Tk * d.Hkv + hk) * d.Dv, d.Tk, d.Dv, d.Hkv * d.Dv) = dV;
  });
}

template void causal_attention_fwd<float>(const AttentionDims&, const float*, const float*,
                                          const float*, float*, float*);
template void causal_attention_fwd<double>(const AttentionDims&, const double*, const double*,
                                           const double*, double*, double*);
template void causal_attention_bwd<float>(const AttentionDims&, const float*, const float*,
                                          const float*, const float*, const float*, const float*,
                                          float*, float*, float*);
template void causal_attention_bwd<double>(const AttentionDims&, const double*, const double*,
                                           const double*, const double*, const double*,
                                           const double*, double*, double*, double*);

}  // namespace kimi::cpu
