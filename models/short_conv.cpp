// ShortConv: FLA's ShortConvolution over kimi::causal_conv1d (core/ops/sequence_ops.cpp).
#include "models/short_conv.h"

#include <cmath>

#include "core/nn/layers.h"

namespace kimi::models {

ShortConv::ShortConv(int64_t dim_, int64_t width_, bool has_bias, bool silu_, Rng& rng, DType dtype)
    : dim(dim_), width(width_), silu(silu_) {
  KIMI_CHECK(dim > 0 && width >= 1, "ShortConv: dim {} width {}", dim, width);
  const double bound = 1.0 / std::sqrt(static_cast<double>(width));
  weight =
      register_parameter("weight", nn::rand_uniform({dim, 1, width}, rng, -bound, bound, dtype));
  if (has_bias)
    bias = register_parameter("bias", nn::rand_uniform({dim}, rng, -bound, bound, dtype));
}

Tensor ShortConv::new_tail(int64_t batch) const {
  return Tensor::zeros({batch, width - 1, dim}, weight.dtype(), weight.device());
}

Tensor ShortConv::forward(const Tensor& x, Tensor* tail) const {
  const bool keep = tail && width > 1;
  Tensor prefix = keep ? nn::cast_like(*tail, x) : Tensor();
  if (keep)
    KIMI_CHECK(prefix.defined() && prefix.shape() == Shape({x.size(0), width - 1, dim}),
               "ShortConv: tail {} for input {}", prefix.defined() ? prefix.str() : "undefined",
               x.str());
  Tensor y = causal_conv1d(x, nn::cast_like(weight, x).reshape({dim, width}),
                           nn::cast_like(bias, x), prefix);
  if (keep) {
    NoGradGuard no_grad;
    Tensor all = concat({prefix, x.detach()}, 1);
    *tail = all.narrow(1, all.size(1) - (width - 1), width - 1).clone();
  }
  return silu ? kimi::silu(y) : y;
}

}  // namespace kimi::models
