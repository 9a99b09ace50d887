// CPU kernels of the reduction family (core/backend/reduce_kernels.h). Sums accumulate in
// double; max, cumsum and argmax walk a contiguous copy viewed as [outer, n, inner].
#include <algorithm>
#include <vector>

#include "core/backend/reduce_kernels.h"

namespace kimi {
namespace {

// The leading dims reduced (a broadcast gradient summed back to a bias or a per-channel
// parameter): x as [M, C] rows added into double partial sums, one per group of rows, then
// the groups in order. Groups depend only on M (at most 64), so the sum does not depend on the
// thread count; no transposed copy of x.
template <class scalar_t>
void sum_leading(const scalar_t* p, int64_t M, int64_t C, scalar_t* o) {
  constexpr int64_t kMaxGroups = 64, kMinGroupRows = 64;
  const int64_t per = std::max(kMinGroupRows, (M + kMaxGroups - 1) / kMaxGroups);
  const int64_t groups = (M + per - 1) / per;
  std::vector<double> part(groups * C, 0.0);
#pragma omp parallel for if (M * C > 65536) schedule(static)
  for (int64_t g = 0; g < groups; ++g) {
    double* acc = part.data() + g * C;
    for (int64_t r = g * per; r < std::min(M, (g + 1) * per); ++r) {
      const scalar_t* row = p + r * C;
      for (int64_t c = 0; c < C; ++c) acc[c] += row[c];
    }
  }
#pragma omp parallel for if (groups * C > 65536) schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    double acc = 0;
    for (int64_t g = 0; g < groups; ++g) acc += part[g * C + c];
    o[c] = static_cast<scalar_t>(acc);
  }
}

// A run of middle dims reduced (x as [A, M, C], C > 1: a broadcast over a middle dim, as
// Mamba2's groups expanded to heads): each of the A outputs rows sums its M rows of C in double,
// in order; parallel over A, so again independent of the thread count.
template <class scalar_t>
void sum_middle(const scalar_t* p, int64_t A, int64_t M, int64_t C, scalar_t* o) {
#pragma omp parallel if (A * M * C > 65536)
  {
    std::vector<double> acc(C);  // one per thread, not per output row
#pragma omp for schedule(static)
    for (int64_t a = 0; a < A; ++a) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t m = 0; m < M; ++m) {
        const scalar_t* row = p + (a * M + m) * C;
        for (int64_t c = 0; c < C; ++c) acc[c] += row[c];
      }
      for (int64_t c = 0; c < C; ++c) o[a * C + c] = static_cast<scalar_t>(acc[c]);
    }
  }
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, const Shape& kshape) {
  // dims (sorted) one run [d0, d1] not reaching the last dim: x is [A, M, C] with C > 1, read
  // in place (no transposed copy).
  bool run = !dims.empty() && dims.back() < x.dim() - 1;
  for (size_t i = 1; i < dims.size(); ++i) run = run && dims[i] == dims[i - 1] + 1;
  if (run) {
    int64_t A = 1, M = 1, C = 1;
    for (int64_t d = 0; d < x.dim(); ++d)
      (d < dims.front() ? A : d <= dims.back() ? M : C) *= x.size(d);
    Tensor out = Tensor::empty(kshape, x.dtype(), x.device());
    Tensor xc = x.detach().contiguous();
    dispatch_float(x.dtype(), "sum", [&](auto tag_) {
      using scalar_t = KIMI_SCALAR_T(tag_);
      const scalar_t* p = xc.data<scalar_t>();
      scalar_t* o = out.data<scalar_t>();
      if (A == 1)
        sum_leading<scalar_t>(p, M, C, o);
      else
        sum_middle<scalar_t>(p, A, M, C, o);
    });
    return out;
  }
  // Move the reduced dims last, then each output element sums one contiguous row.
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) perm.push_back(d);
  int64_t m = 1;
  for (int64_t d : dims) {
    perm.push_back(d);
    m *= x.size(d);
  }
  Tensor out = Tensor::empty(kshape, x.dtype(), x.device());
  Tensor xp = x.detach().permute(perm).contiguous();
  const int64_t rows = out.numel();
  dispatch_float(x.dtype(), "sum", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* p = xp.data<scalar_t>();
    scalar_t* o = out.data<scalar_t>();
#pragma omp parallel for if (rows * m > 65536) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0;  // double accumulation keeps float sums of long rows accurate
      for (int64_t j = 0; j < m; ++j) acc += p[r * m + j];
      o[r] = static_cast<scalar_t>(acc);
    }
  });
  return out;
}

Tensor max(const Tensor& x, int64_t dim, Tensor* index) {
  AxisSplit a = split_at(x.shape(), dim);
  Tensor xc = x.detach().contiguous();
  Shape kshape = x.shape();
  kshape[dim] = 1;
  Tensor out = Tensor::empty(kshape, x.dtype());
  *index = Tensor::empty({a.outer * a.inner}, DType::kI64);
  int64_t* arg = index->data<int64_t>();
  dispatch_float(x.dtype(), "max", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* p = xc.data<scalar_t>();
    scalar_t* o = out.data<scalar_t>();
    for (int64_t i = 0; i < a.outer; ++i)
      for (int64_t k = 0; k < a.inner; ++k) {
        int64_t best = 0;
        for (int64_t j = 1; j < a.n; ++j)
          if (p[(i * a.n + j) * a.inner + k] > p[(i * a.n + best) * a.inner + k]) best = j;
        arg[i * a.inner + k] = best;
        o[i * a.inner + k] = p[(i * a.n + best) * a.inner + k];
      }
  });
  return out;
}

Tensor max_backward(const Tensor& g, const Tensor& index, const Shape& in, int64_t dim) {
  const AxisSplit a = split_at(in, dim);
  const int64_t* arg = index.data<int64_t>();
  Tensor gc = g.detach().contiguous();
  Tensor dx = Tensor::zeros(in, gc.dtype());
  dispatch_float(gc.dtype(), "max", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* gp = gc.data<scalar_t>();
    scalar_t* d = dx.data<scalar_t>();
    for (int64_t i = 0; i < a.outer; ++i)
      for (int64_t k = 0; k < a.inner; ++k)
        d[(i * a.n + arg[i * a.inner + k]) * a.inner + k] = gp[i * a.inner + k];
  });
  return dx;
}

Tensor cumsum(const Tensor& x, int64_t dim, bool reverse) {
  AxisSplit a = split_at(x.shape(), dim);
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "cumsum", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* p = xc.data<scalar_t>();
    scalar_t* o = out.data<scalar_t>();
    for (int64_t i = 0; i < a.outer; ++i)
      for (int64_t k = 0; k < a.inner; ++k) {
        scalar_t acc = 0;
        for (int64_t jj = 0; jj < a.n; ++jj) {
          int64_t j = reverse ? a.n - 1 - jj : jj;
          acc += p[(i * a.n + j) * a.inner + k];
          o[(i * a.n + j) * a.inner + k] = acc;
        }
      }
  });
  return out;
}

Tensor argmax_lastdim(const Tensor& x) {
  Tensor xc = x.detach().contiguous();
  const int64_t n = x.size(-1), rows = x.numel() / std::max<int64_t>(n, 1);
  Shape s = x.shape();
  s.pop_back();
  Tensor out = Tensor::empty(s, DType::kI32);
  int32_t* o = out.data<int32_t>();
  dispatch_float(x.dtype(), "argmax", [&](auto tag_) {
    using scalar_t = KIMI_SCALAR_T(tag_);
    const scalar_t* p = xc.data<scalar_t>();
    for (int64_t r = 0; r < rows; ++r) {
      const scalar_t* row = p + r * n;
      o[r] = static_cast<int32_t>(std::max_element(row, row + n) - row);
    }
  });
  return out;
}

}  // namespace

void register_cpu_reduce_kernels() {
  KernelTable<ReduceKernels>::set(Device::kCPU, {sum, max, max_backward, cumsum, argmax_lastdim});
}

}  // namespace kimi
