// The mixture-of-experts ops: checks, supports(), one autograd node per differentiable op, and
// a call into the MoE kernel table of the tensors' device (core/backend/moe_kernels.h).
#include "core/ops/moe_ops.h"

#include "core/backend/moe_kernels.h"
#include "core/ops/ops.h"

namespace kimi {
namespace {

bool is_index(DType t) { return t == DType::kI32 || t == DType::kI64; }

// On the CPU the index tensors are read for free; on the GPU they are produced by the routing
// kernels and trusted.
void check_offsets(const Tensor& offsets, int64_t E, int64_t S) {
  if (offsets.device() != Device::kCPU) return;
  const std::vector<int64_t> off = offsets.to_vector<int64_t>();
  KIMI_CHECK(off.front() == 0 && off.back() == S,
             "grouped_matmul: offsets must run from 0 to the {} rows, got {} .. {}", S, off.front(),
             off.back());
  for (int64_t e = 0; e < E; ++e)
    KIMI_CHECK(off[e] <= off[e + 1], "grouped_matmul: offsets decrease at expert {} ({} > {})", e,
               off[e], off[e + 1]);
}

}  // namespace

Tensor grouped_matmul(const Tensor& x, const Tensor& w, const Tensor& offsets) {
  KIMI_CHECK(x.dim() == 2 && w.dim() == 3 && x.size(1) == w.size(2),
             "grouped_matmul: x {} with weights {} (want [S, in] and [E, out, in])",
             shape_str(x.shape()), shape_str(w.shape()));
  KIMI_CHECK(x.dtype() == w.dtype() && is_floating(x.dtype()),
             "grouped_matmul: x {} with weights {}", dtype_name(x.dtype()), dtype_name(w.dtype()));
  KIMI_CHECK(
      offsets.dtype() == DType::kI64 && offsets.dim() == 1 && offsets.size(0) == w.size(0) + 1,
      "grouped_matmul: offsets {} {} for {} experts (want I64 [E+1])", dtype_name(offsets.dtype()),
      shape_str(offsets.shape()), w.size(0));
  check_same_device(x, w, "grouped_matmul");
  check_same_device(x, offsets, "grouped_matmul");
  check_offsets(offsets, w.size(0), x.size(0));
  const OpContext ctx = OpContext::current();
  check_supported(x.device(),
                  {Op::k_grouped_matmul, x.dtype(), {x.shape(), w.shape()}, 0, false, ctx});
  const auto& k = kernels<MoeKernels>(x, "grouped_matmul");
  Tensor y = k.grouped_matmul(ctx, x, w, offsets);
  const Tensor off = offsets.detach();
  return record("grouped_matmul", y, {x, w},
                [=, &k](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  Tensor dx, dw;
                  k.grouped_matmul_backward(ctx, x.detach(), w.detach(), off, g[0],
                                            x.requires_grad(), w.requires_grad(), &dx, &dw);
                  return {dx, dw};
                });
}

Tensor gather_rows(const Tensor& x, const Tensor& index) {
  KIMI_CHECK(x.dim() == 2 && index.dim() == 1 && is_index(index.dtype()),
             "gather_rows: x {} with index {} {} (want [R, D] and I32/I64 [S])",
             shape_str(x.shape()), dtype_name(index.dtype()), shape_str(index.shape()));
  KIMI_CHECK(is_floating(x.dtype()), "gather_rows: float input, got {}", dtype_name(x.dtype()));
  check_same_device(x, index, "gather_rows");
  const int64_t R = x.size(0);
  if (index.device() == Device::kCPU) {
    const std::vector<int64_t> idx = index.to_vector<int64_t>();
    for (size_t s = 0; s < idx.size(); ++s)
      KIMI_CHECK(idx[s] >= 0 && idx[s] < R, "gather_rows: index {} at position {} out of [0, {})",
                 idx[s], s, R);
  }
  check_supported(
      x.device(),
      {Op::k_gather_rows, x.dtype(), {x.shape(), index.shape()}, 0, false, OpContext::current()});
  const auto& k = kernels<MoeKernels>(x, "gather_rows");
  Tensor y = k.gather_rows(x, index);
  const Tensor idx = index.detach();
  const DType dt = x.dtype();
  return record("gather_rows", y, {x},
                [=, &k](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                  return {k.gather_rows_backward(idx, g[0].to(dt), R)};
                });
}

ExpertChoice moe_route_topk(const Tensor& scores, const Tensor& bias, int64_t top_k, int64_t groups,
                            int64_t topk_group) {
  KIMI_CHECK(scores.dim() == 2 && bias.dim() == 1 && bias.size(0) == scores.size(1),
             "moe_route_topk: scores {} with bias {} (want [N, E] and [E])",
             shape_str(scores.shape()), shape_str(bias.shape()));
  KIMI_CHECK((scores.dtype() == DType::kF32 || scores.dtype() == DType::kF64) &&
                 bias.dtype() == scores.dtype(),
             "moe_route_topk: scores {} and bias {} (want both F32 or both F64)",
             dtype_name(scores.dtype()), dtype_name(bias.dtype()));
  const int64_t E = scores.size(1);
  KIMI_CHECK(top_k >= 1 && groups >= 1 && E % groups == 0 && topk_group >= 1 &&
                 topk_group <= groups && top_k <= topk_group * (E / groups),
             "moe_route_topk: top-k {} of {} experts in {} groups ({} kept)", top_k, E, groups,
             topk_group);
  KIMI_CHECK(scores.numel() < (int64_t{1} << 31), "moe_route_topk: {} scores (at most 2^31)",
             scores.numel());
  check_same_device(scores, bias, "moe_route_topk");
  ExpertChoice c;
  c.ids = kernels<MoeKernels>(scores, "moe_route_topk")
              .route_topk(scores.detach().contiguous(), bias.detach().contiguous(), top_k, groups,
                          topk_group, &c.flat);
  return c;
}

ExpertSort moe_sort_by_expert(const Tensor& ids, int64_t num_experts) {
  KIMI_CHECK(ids.dim() == 2 && ids.dtype() == DType::kI32 && num_experts >= 1,
             "moe_sort_by_expert: ids {} {} for {} experts (want I32 [N, K])",
             dtype_name(ids.dtype()), shape_str(ids.shape()), num_experts);
  if (ids.device() == Device::kCPU)
    for (int64_t id : ids.to_vector<int64_t>())
      KIMI_CHECK(id >= 0 && id < num_experts, "moe_sort_by_expert: expert id {} of {}", id,
                 num_experts);
  ExpertSort r;
  kernels<MoeKernels>(ids, "moe_sort_by_expert")
      .sort_by_expert(ids.contiguous(), num_experts, &r.token, &r.position, &r.offsets);
  return r;
}

}  // namespace kimi
