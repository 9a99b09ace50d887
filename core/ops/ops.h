// The differentiable ops (see core/backend/op_list.h for the list the tests walk). Each op checks
// shapes once here at the boundary, then calls a raw-pointer kernel for the tensor's device.
// Float ops compute in the input dtype (F32 or F64); bf16 is a storage type only.
#pragma once

#include <vector>

#include "core/autograd/autograd.h"
#include "core/tensor/tensor.h"

namespace kimi {

// --- binary, with NumPy broadcasting ---------------------------------------------------
// Float operands of different dtypes meet in the wider one, as in PyTorch (F32 with BF16 gives
// F32, BF16 with F16 gives F32); each input's gradient comes back in its own dtype.
DType promote_float(DType a, DType b);  // throws unless both are float dtypes
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient goes to a where a >= b
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor pow_scalar(const Tensor& a, double p);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add_scalar(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }

// --- unary --------------------------------------------------------------------------------
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x);  // log(1 + e^x), exactly x above 20 (as PyTorch)
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor abs(const Tensor& x);
inline Tensor operator-(const Tensor& x) { return neg(x); }

// --- reductions -----------------------------------------------------------------------------
// dims empty = all dims. keepdim keeps reduced dims as size 1.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);  // gradient to the first argmax
Tensor cumsum(const Tensor& x, int64_t dim);
// Index of the largest entry along the last dim (int32), no gradient.
Tensor argmax_lastdim(const Tensor& x);

// --- products -------------------------------------------------------------------------------
// a [..., M, K] @ b [K, N] or b [..., K, N] (same leading dims as a).
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ w[out, in]^T + bias[out] (bias optional), the PyTorch Linear layout.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());

// --- softmax family (over the last dim) ------------------------------------------------------
Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);
// logits [N, C], targets int32 [N]; mean over targets != ignore_index (0 counted -> 0 loss).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

// --- norms (over the last dim) ---------------------------------------------------------------
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);  // weight optional
Tensor l2_norm(const Tensor& x, double eps = 1e-6);                  // x / sqrt(sum x^2 + eps)

// --- sequence ops ----------------------------------------------------------------------------
// x [B, T, D], w [D, W] (depthwise, causal: left pad W-1), bias [D] optional -> [B, T, D].
// `prefix` [B, W-1, D] optional: the tail of the previous segment (decoding); zeros otherwise.
Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor(),
                     const Tensor& prefix = Tensor());
// weight [V, D], ids int32/int64 any shape -> [..., D]; backward scatter-adds.
Tensor embedding(const Tensor& weight, const Tensor& ids);

// --- joins and selection ---------------------------------------------------------------------
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// cond: any dtype, nonzero = true; broadcasts. a and b promote as the binary ops do.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

}  // namespace kimi
