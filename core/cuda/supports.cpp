// What the CUDA kernels run, in words where they do not: asked by every op that has a limit on
// the GPU (core/backend/backend.h check_supported) before any kernel starts, so a limit is a
// clear error naming the op instead of a check deep in a kernel launcher.
#include "core/cuda/supports.h"

#include <fmt/format.h>

#include "core/cuda/delta_rule/recurrence_plan.h"

namespace kimi {
namespace {

const Shape& shape_at(const OpQuery& q, size_t i) {
  static const Shape kNone;
  return i < q.shapes.size() ? q.shapes[i] : kNone;
}

// delta_rule (q, k, v, g, beta, h0) and linear_recurrence (q, k, v, g, h0): q [B,T,H,K],
// v [B,T,H,V], h0 the last shape (empty: none).
std::string recurrence(const OpQuery& q) {
  if (q.dtype != DType::kF32 && q.dtype != DType::kBF16)
    return fmt::format("the recurrence kernels take F32 or BF16 (got {})", dtype_name(q.dtype));
  const Shape& qs = shape_at(q, 0);
  const Shape& vs = shape_at(q, 2);
  if (qs.size() != 4 || vs.size() != 4) return "";  // the op's shape checks speak first
  const int64_t T = qs[1], K = qs[3], V = vs[3];
  if (K > cuda::kCudaMaxK)
    return fmt::format(
        "key head dim K <= {} (got {}): the kernels hold a state column of K "
        "values",
        cuda::kCudaMaxK, K);
  const bool delta = q.op == Op::k_delta_rule;
  const bool has_h0 = !q.shapes.empty() && !q.shapes.back().empty();
  const cuda::RecurrencePlan p = cuda::plan_recurrence(delta, q.dtype == DType::kBF16, T, V, has_h0,
                                                       q.chunk_form, q.ctx.precision);
  if (p.chunk && q.chunk != cuda::kCudaChunk)
    return fmt::format("chunk_size {} only on CUDA (got {}); use {} or form recurrent",
                       cuda::kCudaChunk, q.chunk, cuda::kCudaChunk);
  return "";
}

// q [B,Tq,Hq,D], k [B,Tk,Hkv,D], v [B,Tk,Hkv,Dv].
std::string attention(const OpQuery& q) {
  if (q.dtype != DType::kF32 && q.dtype != DType::kBF16)
    return fmt::format("the attention kernels take F32 or BF16 (got {})", dtype_name(q.dtype));
  const Shape& qs = shape_at(q, 0);
  const Shape& ks = shape_at(q, 1);
  const Shape& vs = shape_at(q, 2);
  if (qs.size() != 4 || ks.size() != 4 || vs.size() != 4) return "";
  const int64_t D = qs[3], Dv = vs[3];
  if (D > 256 || Dv > 256) return fmt::format("head dims D, Dv <= 256 (got D={}, Dv={})", D, Dv);
  if (ks[1] >= (int64_t{1} << 31) || qs[0] * qs[2] >= (int64_t{1} << 31))
    return fmt::format("Tk < 2^31 and B * Hq < 2^31 (got Tk={}, B * Hq={})", ks[1], qs[0] * qs[2]);
  return "";
}

std::string rope(const OpQuery& q) {
  if (q.dtype != DType::kF32 && q.dtype != DType::kBF16 && q.dtype != DType::kF64)
    return fmt::format("the rope kernel takes F32, BF16 or F64 (got {})", dtype_name(q.dtype));
  return "";
}

}  // namespace

std::string cuda_supports(const OpQuery& q) {
  switch (q.op) {
    case Op::k_delta_rule:
    case Op::k_linear_recurrence: return recurrence(q);
    case Op::k_causal_attention: return attention(q);
    case Op::k_rope: return rope(q);
    default: return "";
  }
}

}  // namespace kimi
