// CPU kernels of the mixture-of-experts ops (core/backend/moe_kernels.h): the oracle of the CUDA
// ones. The grouped GEMM runs one Eigen GEMM per expert group (gemm.h); routing and the sort by
// expert are plain loops (the sort is a stable counting sort, so equal experts keep token order).
#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "core/backend/moe_kernels.h"
#include "core/cpu/gemm.h"

namespace kimi {
namespace {

std::vector<int64_t> offsets_of(const Tensor& offsets) { return offsets.to_vector<int64_t>(); }

Tensor grouped_matmul(const OpContext&, const Tensor& x, const Tensor& w, const Tensor& offsets) {
  const int64_t S = x.size(0), in = x.size(1), E = w.size(0), out_f = w.size(1);
  const std::vector<int64_t> off = offsets_of(offsets);
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous();
  Tensor y = Tensor::zeros({S, out_f}, x.dtype());
  dispatch_float(x.dtype(), "grouped_matmul", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = off[e], n = off[e + 1] - off[e];
      if (n <= 0) continue;
      cpu::gemm<scalar_t>(false, true, n, out_f, in, scalar_t(1), xc.data<scalar_t>() + r0 * in, in,
                          wc.data<scalar_t>() + e * out_f * in, in, scalar_t(0),
                          y.data<scalar_t>() + r0 * out_f, out_f);
    }
  });
  return y;
}

void grouped_matmul_backward(const OpContext&, const Tensor& x, const Tensor& w,
                             const Tensor& offsets, const Tensor& g, bool need_x, bool need_w,
                             Tensor* dx, Tensor* dw) {
  const int64_t S = x.size(0), in = x.size(1), E = w.size(0), out_f = w.size(1);
  const std::vector<int64_t> off = offsets_of(offsets);
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous();
  Tensor gc = g.detach().to(x.dtype()).contiguous();
  if (need_x) *dx = Tensor::zeros({S, in}, x.dtype());
  if (need_w) *dw = Tensor::zeros(w.shape(), w.dtype());
  dispatch_float(x.dtype(), "grouped_matmul", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* gp = gc.data<scalar_t>();
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r0 = off[e], n = off[e + 1] - off[e];
      if (n <= 0) continue;
      if (need_x)  // dx = dy W_e
        cpu::gemm<scalar_t>(false, false, n, in, out_f, scalar_t(1), gp + r0 * out_f, out_f,
                            wc.data<scalar_t>() + e * out_f * in, in, scalar_t(0),
                            dx->data<scalar_t>() + r0 * in, in);
      if (need_w)  // dW_e = dy^T x over the group
        cpu::gemm<scalar_t>(true, false, out_f, in, n, scalar_t(1), gp + r0 * out_f, out_f,
                            xc.data<scalar_t>() + r0 * in, in, scalar_t(0),
                            dw->data<scalar_t>() + e * out_f * in, in);
    }
  });
}

Tensor gather_rows(const Tensor& x, const Tensor& index) {
  const int64_t D = x.size(1), S = index.numel();
  const std::vector<int64_t> idx = index.to_vector<int64_t>();
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty({S, D}, x.dtype());
  dispatch_float(x.dtype(), "gather_rows", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* xp = xc.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
    for (int64_t s = 0; s < S; ++s) std::copy(xp + idx[s] * D, xp + (idx[s] + 1) * D, yp + s * D);
  });
  return y;
}

Tensor gather_rows_backward(const Tensor& index, const Tensor& g, int64_t rows) {
  const int64_t D = g.size(1), S = index.numel();
  const std::vector<int64_t> idx = index.to_vector<int64_t>();
  Tensor gc = g.detach().contiguous();
  Tensor dx = Tensor::zeros({rows, D}, g.dtype());
  dispatch_float(g.dtype(), "gather_rows", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* gp = gc.data<scalar_t>();
    scalar_t* dp = dx.data<scalar_t>();
    for (int64_t s = 0; s < S; ++s)
      for (int64_t j = 0; j < D; ++j) dp[idx[s] * D + j] += gp[s * D + j];
  });
  return dx;
}

// Group-limited routing (DeepSeek-V3): a group's score is the sum of its two best biased scores;
// experts outside the best topk_group groups are removed from the choice.
void mask_groups(std::vector<double>& choice, int64_t groups, int64_t topk_group) {
  const int64_t per = static_cast<int64_t>(choice.size()) / groups;
  std::vector<double> group_score(groups);
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<double> v(choice.begin() + g * per, choice.begin() + (g + 1) * per);
    const int64_t best = std::min<int64_t>(2, per);
    std::partial_sort(v.begin(), v.begin() + best, v.end(), std::greater<>());
    group_score[g] = std::accumulate(v.begin(), v.begin() + best, 0.0);
  }
  std::vector<int64_t> order(groups);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return group_score[a] > group_score[b]; });
  for (int64_t i = topk_group; i < groups; ++i)
    std::fill(choice.begin() + order[i] * per, choice.begin() + (order[i] + 1) * per,
              -std::numeric_limits<double>::infinity());
}

Tensor route_topk(const Tensor& scores, const Tensor& bias, int64_t K, int64_t groups,
                  int64_t topk_group, Tensor* flat) {
  const int64_t N = scores.size(0), E = scores.size(1);
  // Sums in the scores' dtype, as the CUDA kernel, so both pick the same experts.
  const std::vector<double> s = scores.to_vector<double>(), b = bias.to_vector<double>();
  const bool f32 = scores.dtype() == DType::kF32;
  std::vector<int32_t> ids(N * K), pos(N * K);
  std::vector<double> choice(E);
  std::vector<int64_t> order(E);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t e = 0; e < E; ++e) {
      choice[e] = s[n * E + e] + b[e];
      if (f32) choice[e] = static_cast<float>(choice[e]);
    }
    if (groups > 1) mask_groups(choice, groups, topk_group);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int64_t a, int64_t c) {
      return choice[a] > choice[c] || (choice[a] == choice[c] && a < c);
    });
    for (int64_t k = 0; k < K; ++k) {
      ids[n * K + k] = static_cast<int32_t>(order[k]);
      pos[n * K + k] = static_cast<int32_t>(n * E + order[k]);
    }
  }
  *flat = Tensor::from_vector(pos, {N * K});
  return Tensor::from_vector(ids, {N, K});
}

void sort_by_expert(const Tensor& ids, int64_t E, Tensor* token, Tensor* position,
                    Tensor* offsets) {
  const int64_t S = ids.numel(), K = ids.size(-1);
  const std::vector<int64_t> id = ids.to_vector<int64_t>();
  std::vector<int64_t> off(E + 1, 0);
  for (int64_t s = 0; s < S; ++s) ++off[id[s] + 1];
  for (int64_t e = 0; e < E; ++e) off[e + 1] += off[e];
  std::vector<int64_t> next(off.begin(), off.end() - 1);
  std::vector<int32_t> tok(S), pos(S);
  for (int64_t s = 0; s < S; ++s) {
    const int64_t p = next[id[s]]++;
    pos[s] = static_cast<int32_t>(p);
    tok[p] = static_cast<int32_t>(s / K);
  }
  *token = Tensor::from_vector(tok, {S});
  *position = Tensor::from_vector(pos, {S});
  *offsets = Tensor::from_vector(off, {E + 1});
}

}  // namespace

void register_cpu_moe_kernels() {
  KernelTable<MoeKernels>::set(Device::kCPU, {grouped_matmul, grouped_matmul_backward, gather_rows,
                                              gather_rows_backward, route_topk, sort_by_expert});
}

}  // namespace kimi
