// The chunk delta-rule forward's per-chunk stage (what the intra kernels hand the state kernel,
// core/cuda/delta_rule/delta_rule_chunk.cuh ChunkBuffers) in double precision, for per-channel
// gates: shared by the host emulation of the tensor-core intra kernel
// (tests/intra_mma_tiles_test.cpp) and the CUDA parity cases (tests/cuda/cuda_parity_test.cpp).
// Chunks of 64 tokens; inside a chunk G = cumsum(g) and, for rows i, j < L (the chunk's length):
//   A_qk[i,j] = scale q_i . (k_j o exp(G_i - G_j))           j <= i  (zero elsewhere)
//   A[i,j]    = beta_i k_i . (k_j o exp(G_i - G_j))           j < i
//   Tinv = (I + A)^-1,  W = Tinv (beta exp(G) o k),  U = Tinv (beta v)
//   Gq = scale q o exp(G),  Kd = k o exp(G_last - G),  EgL = exp(G_last)  (G_last = G_{L-1})
// Inputs [B,T,H,K] / [B,T,H,V] / beta [B,T,H] in any floating type (the values a kernel sees,
// e.g. already rounded to bf16); outputs in the kernels' layouts: W, Gq, Kd [B,T,H,K],
// U [B,T,H,V], A_qk [B*H][NC][64][64], EgL [B*H][NC][K].
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace kimi::test {

struct IntraOutputs {
  std::vector<double> W, U, Gq, Kd, Aqk, EgL;
};

template <class F>
IntraOutputs chunk_intra_reference(int B, int T, int H, int K, int V, double scale,
                                   const std::vector<F>& q, const std::vector<F>& k,
                                   const std::vector<F>& v, const std::vector<F>& g,
                                   const std::vector<F>& beta) {
  constexpr int kC = 64;
  const int NC = (T + kC - 1) / kC;
  IntraOutputs o;
  o.W.assign(size_t(B) * T * H * K, 0.0);
  o.Gq = o.Kd = o.W;
  o.U.assign(size_t(B) * T * H * V, 0.0);
  o.Aqk.assign(size_t(B) * H * NC * kC * kC, 0.0);
  o.EgL.assign(size_t(B) * H * NC * K, 0.0);
  auto tk = [&](int b, int t, int h) { return (int64_t(b) * T + t) * H + h; };
  std::vector<double> G(size_t(kC) * K), A(kC * kC), Tinv(kC * kC);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int c = 0; c < NC; ++c) {
        const int t0 = c * kC, L = std::min(kC, T - t0);
        const int64_t item = (int64_t(b) * H + h) * NC + c;
        for (int d = 0; d < K; ++d) {
          double acc = 0;
          for (int i = 0; i < L; ++i) G[i * K + d] = acc += double(g[tk(b, t0 + i, h) * K + d]);
        }
        auto kq = [&](const std::vector<F>& x, int i, int d) {
          return double(x[tk(b, t0 + i, h) * K + d]);
        };
        for (int i = 0; i < L; ++i)
          for (int j = 0; j <= i; ++j) {
            double skk = 0, sqk = 0;
            for (int d = 0; d < K; ++d) {
              const double kj = kq(k, j, d) * std::exp(G[i * K + d] - G[j * K + d]);
              skk += kq(k, i, d) * kj;
              sqk += kq(q, i, d) * kj;
            }
            A[i * kC + j] = j < i ? double(beta[tk(b, t0 + i, h)]) * skk : 0.0;
            o.Aqk[(item * kC + i) * kC + j] = scale * sqk;
          }
        for (int j = 0; j < L; ++j)  // forward substitution, column by column
          for (int i = 0; i < L; ++i) {
            double x = i == j ? 1.0 : 0.0;
            for (int m = j; m < i; ++m) x -= A[i * kC + m] * Tinv[m * kC + j];
            Tinv[i * kC + j] = i < j ? 0.0 : x;
          }
        for (int i = 0; i < L; ++i) {
          const int64_t ri = tk(b, t0 + i, h);
          for (int d = 0; d < K; ++d) {
            double w = 0;
            for (int j = 0; j <= i; ++j)
              w += Tinv[i * kC + j] * double(beta[tk(b, t0 + j, h)]) * std::exp(G[j * K + d]) *
                   kq(k, j, d);
            o.W[ri * K + d] = w;
            o.Gq[ri * K + d] = scale * kq(q, i, d) * std::exp(G[i * K + d]);
            o.Kd[ri * K + d] = kq(k, i, d) * std::exp(G[(L - 1) * K + d] - G[i * K + d]);
          }
          for (int d = 0; d < V; ++d) {
            double u = 0;
            for (int j = 0; j <= i; ++j)
              u += Tinv[i * kC + j] * double(beta[tk(b, t0 + j, h)]) *
                   double(v[tk(b, t0 + j, h) * V + d]);
            o.U[ri * V + d] = u;
          }
        }
        for (int d = 0; d < K; ++d) o.EgL[item * K + d] = std::exp(G[(L - 1) * K + d]);
      }
  return o;
}

// Relative error of a tensor, ||x - ref|| / ||ref|| (NaN when x has one).
template <class X>
double rel_err_of(const std::vector<X>& x, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(x[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1.0));
}

}  // namespace kimi::test
