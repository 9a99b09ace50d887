// Internal helpers shared by the delta-rule / linear-recurrence CPU kernels (not a public API):
// per-head indexing into the [B,T,H,*] layout, and the chunk algebra of docs/math.md#chunkwise
// (pairwise decays exp(G_i - G_j), the WY/UT solve) that the chunk forward and backward share.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <vector>

#include "core/cpu/delta_rule.h"
#include "core/cpu/parallel.h"
#include "core/tensor/error.h"

namespace kimi::cpu::detail {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using RowVec = Eigen::Matrix<T, 1, Eigen::Dynamic>;
template <class T>
using ColVec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
// L rows of one head inside a [B,T,H,D] tensor: row stride H*D.
template <class T>
using RowsMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstRowsMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

// Element offsets of one (batch, head) inside the tensors of RecurrenceDims.
struct HeadIndex {
  const RecurrenceDims& d;
  int64_t b, h;
  int64_t qk(int64_t t) const { return ((b * d.T + t) * d.H + h) * d.K; }
  int64_t vo(int64_t t) const { return ((b * d.T + t) * d.H + h) * d.V; }
  int64_t tok(int64_t t) const { return (b * d.T + t) * d.H + h; }  // beta, scalar g
  int64_t gate(int64_t t) const { return d.gate == GateKind::kPerChannel ? qk(t) : tok(t); }
  int64_t state() const { return (b * d.H + h) * d.K * d.V; }
};

inline void check_dims(const RecurrenceDims& d, const void* g) {
  KIMI_CHECK(d.B >= 0 && d.T >= 0 && d.H >= 0 && d.K > 0 && d.V > 0,
             "recurrence: bad dims B={} T={} H={} K={} V={}", d.B, d.T, d.H, d.K, d.V);
  KIMI_CHECK(d.chunk > 0, "recurrence: chunk must be positive, got {}", d.chunk);
  KIMI_CHECK((d.gate == GateKind::kNone) == (g == nullptr),
             "recurrence: g must be given exactly when the gate kind is not kNone");
}

// Runs f(HeadIndex) for every (batch, head), threaded over B*H when the call has at least ~1M
// multiply-adds of work (parallel.h says why small calls stay serial).
template <class F>
void for_each_head(const RecurrenceDims& d, F&& f) {
  const bool threads = d.B * d.H * d.T * d.K * d.V >= (int64_t{1} << 20);
  for_each_item(d.B * d.H, threads, [&](int64_t bh) { f(HeadIndex{d, bh / d.H, bh % d.H}); });
}

template <class T>
ConstRowsMap<T> rows(const T* base, int64_t L, int64_t D, int64_t stride) {
  return ConstRowsMap<T>(base, L, D, Eigen::OuterStride<>(stride));
}
template <class T>
RowsMap<T> rows(T* base, int64_t L, int64_t D, int64_t stride) {
  return RowsMap<T>(base, L, D, Eigen::OuterStride<>(stride));
}

// Pairwise decays Gamma_ij = exp(G_i - G_j) (j <= i) of one chunk, applied without ever
// forming exp(G) and exp(-G) separately. Per-channel gates: the chunk is cut into blocks of
// kBlock rows; for a row i in block I (first row r) and a column j < r,
// Gamma_ij = exp(G_i - G_r) * exp(G_r - G_j), two factors <= 1 when g <= 0, so off-diagonal
// blocks become small GEMMs. Inside a diagonal block Gamma_ij = prod_{j<t<=i} exp(g_t), the
// recurrence's own per-step decays (at most kBlock factors <= 1: no overflow, and no
// cancellation in G_i - G_j when |G| is large). Scalar gates (and no gate): Gamma is an L x L
// matrix of exponentiated differences.
template <class T>
class PairDecay {
 public:
  static constexpr int64_t kBlock = 16;
  // g: L x K per-token log decays, G: their cumulative sums inside the chunk (columns all
  // equal when !per_channel).
  void build(const RowMat<T>& g, const RowMat<T>& G, bool per_channel);
  // X_ij = sum_d P1_i[d] P2_j[d] Gamma_ij[d] for j < i (j <= i if inclusive), 0 elsewhere.
  RowMat<T> gram(const RowMat<T>& P1, const RowMat<T>& P2, bool inclusive) const;
  // Y_i = sum_{j<=i} X_ij Gamma_ij o P_j   (X lower triangular; the adjoint of gram in P2).
  RowMat<T> row_apply(const RowMat<T>& X, const RowMat<T>& P) const;
  // Z_j = sum_{i>=j} X_ij Gamma_ij o P_i   (the adjoint of gram in P1).
  RowMat<T> col_apply(const RowMat<T>& X, const RowMat<T>& P) const;

 private:
  bool per_channel_ = false;
  int64_t L_ = 0, K_ = 0;
  RowMat<T> gamma_;              // scalar gates: L x L, lower triangle incl. diagonal
  std::vector<RowMat<T>> a_;     // block I: exp(G_i - G_r), rows of block I
  std::vector<RowMat<T>> b_;     // block I: exp(G_r - G_j), j < r
  std::vector<RowMat<T>> diag_;  // block I: row ii*n+jj = exp(G_i - G_j), jj <= ii < n
};

// One chunk of one head, recomputed from the inputs (docs/math.md#chunkwise, steps 1-4). `delta`
// false gives the plain linear recurrence (no A, V' = V). The chunk forward and backward share it.
template <class T>
struct ChunkFwd {
  int64_t L = 0;
  bool delta = true;
  RowMat<T> Q, K, V;   // the chunk's rows (L x K, L x K, L x V)
  ColVec<T> beta;      // L (delta only)
  RowMat<T> g, G, eG;  // log decays, their cumulative sum inside the chunk, exp(G) (L x K)
  RowMat<T> Gk, Kd;    // exp(G) o K, exp(G_last - G) o K
  // [Gq; W] stacked (2L x K; only Gq without the delta rule), Gq = scale exp(G) o Q and
  // W = T Gk with T = (I+A)^{-1} Diag(beta): both multiply the incoming state, so one GEMM.
  RowMat<T> GqW;
  PairDecay<T> pd;
  RowMat<T> Akk;    // k_i.k_j Gamma_ij, strictly lower
  RowMat<T> A;      // Diag(beta) Akk: I + A is the unit lower matrix of the UT transform
  RowMat<T> Aqk;    // scale q_i.k_j Gamma_ij, lower incl. diagonal
  RowMat<T> U, Vp;  // U = T V; V' = U - W S (V' = V without the delta rule)

  auto Gq() const { return GqW.topRows(L); }
  auto W() const { return GqW.bottomRows(L); }
  void load(const HeadIndex& ix, int64_t t0, int64_t len, bool is_delta, const T* q, const T* k,
            const T* v, const T* g_in, const T* beta_in);
  // V' for the incoming state S (K x V).
  void solve(const RowMat<T>& S);
  // V' and the chunk's output O = Gq S + tril(Aqk) V' (L x V, row stride of o).
  void output(const RowMat<T>& S, RowsMap<T> O);
  // S <- Diag(exp(G_last)) S + Kd^T V'.
  void advance(RowMat<T>& S) const;
};

}  // namespace kimi::cpu::detail
