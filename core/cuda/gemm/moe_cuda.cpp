// The CUDA table of the mixture-of-experts ops (core/backend/moe_kernels.h): Tensor glue over
// the raw kernels of grouped_gemm.h and, for the row gather, the embedding kernels of
// core/cuda/sequence (a gather of rows by index is an embedding lookup; its backward the same
// atomic scatter-add into an fp32 buffer). Nothing here reads a device value back: offsets and
// indices are produced and consumed on the stream. The grouped GEMM computes in fp32 (fp64 for
// F64) whatever the OpContext's precision says: tf32 / bf16 products are a speed setting that
// this kernel does not have, and it is never less precise than asked.
#include "core/backend/moe_kernels.h"
#include "core/cuda/gemm/grouped_gemm.h"
#include "core/cuda/runtime/cuda_tensor.h"
#include "core/cuda/sequence/sequence.h"

namespace kimi {
namespace {

Tensor on_gpu(const Tensor& t, DType dt) {
  Tensor r = t.detach();
  if (r.device() != Device::kCUDA) r = r.to(Device::kCUDA);
  if (r.dtype() != dt) r = r.to(dt);
  return r.contiguous();
}

Tensor grouped_matmul(const OpContext&, const Tensor& x, const Tensor& w, const Tensor& offsets) {
  const DType dt = x.dtype();
  check_cuda_float(dt, "grouped_matmul");
  const int64_t S = x.size(0), in = x.size(1), E = w.size(0), out_f = w.size(1);
  const Tensor xc = on_gpu(x, dt), wc = on_gpu(w, dt), off = on_gpu(offsets, DType::kI64);
  Tensor y = Tensor::zeros({S, out_f}, dt, Device::kCUDA);
  Tensor tiles = Tensor::empty({E + 1}, DType::kI64, Device::kCUDA);
  cuda::grouped_gemm(elem_type(dt), S, out_f, in, E, xc.raw_data(), wc.raw_data(), true,
                     off.data<int64_t>(), tiles.data<int64_t>(), y.raw_data());
  return y;
}

void grouped_matmul_backward(const OpContext&, const Tensor& x, const Tensor& w,
                             const Tensor& offsets, const Tensor& g, bool need_x, bool need_w,
                             Tensor* dx, Tensor* dw) {
  const DType dt = x.dtype();
  const int64_t S = x.size(0), in = x.size(1), E = w.size(0), out_f = w.size(1);
  const Tensor gc = on_gpu(g, dt), off = on_gpu(offsets, DType::kI64);
  if (need_x) {  // dx = dy W_e: W_e [out, in] read as the [K = out, N = in] operand
    const Tensor wc = on_gpu(w, dt);
    *dx = Tensor::zeros({S, in}, dt, Device::kCUDA);
    Tensor tiles = Tensor::empty({E + 1}, DType::kI64, Device::kCUDA);
    cuda::grouped_gemm(elem_type(dt), S, in, out_f, E, gc.raw_data(), wc.raw_data(), false,
                       off.data<int64_t>(), tiles.data<int64_t>(), dx->raw_data());
  }
  if (need_w) {  // dW_e = dy^T x over the group
    const Tensor xc = on_gpu(x, dt);
    *dw = Tensor::empty(w.shape(), dt, Device::kCUDA);
    cuda::grouped_gemm_wgrad(elem_type(dt), S, out_f, in, E, gc.raw_data(), xc.raw_data(),
                             off.data<int64_t>(), dw->raw_data());
  }
}

Tensor gather_rows(const Tensor& x, const Tensor& index) {
  const DType dt = x.dtype();
  check_cuda_float(dt, "gather_rows");
  const int64_t R = x.size(0), D = x.size(1), S = index.numel();
  const Tensor xc = on_gpu(x, dt), idx = on_gpu(index, index.dtype());
  Tensor y = Tensor::empty({S, D}, dt, Device::kCUDA);
  cuda::embedding_fwd(elem_type(dt), elem_type(idx.dtype()), S, R, D, idx.raw_data(), xc.raw_data(),
                      y.raw_data());
  return y;
}

Tensor gather_rows_backward(const Tensor& index, const Tensor& g, int64_t rows) {
  const DType dt = g.dtype();
  check_cuda_float(dt, "gather_rows");
  const int64_t S = index.numel(), D = g.size(-1);
  const Tensor gc = on_gpu(g, dt), idx = on_gpu(index, index.dtype());
  const DType acc_dt = dt == DType::kF64 ? DType::kF64 : DType::kF32;
  Tensor acc = Tensor::zeros({rows, D}, acc_dt, Device::kCUDA);
  cuda::embedding_bwd(elem_type(dt), elem_type(idx.dtype()), S, rows, D, idx.raw_data(),
                      gc.raw_data(), acc.raw_data());
  return acc.dtype() == dt ? acc : acc.to(dt);
}

Tensor route_topk(const Tensor& scores, const Tensor& bias, int64_t K, int64_t groups,
                  int64_t topk_group, Tensor* flat) {
  if (K > cuda::kMaxRouteTopK || groups > cuda::kMaxRouteGroups)
    throw UserError(fmt::format("moe routing on cuda: top_k <= {} and groups <= {} (got {}, {})",
                                cuda::kMaxRouteTopK, cuda::kMaxRouteGroups, K, groups));
  const DType dt = scores.dtype();
  const int64_t N = scores.size(0), E = scores.size(1);
  const Tensor sc = on_gpu(scores, dt), bc = on_gpu(bias, dt);
  Tensor ids = Tensor::empty({N, K}, DType::kI32, Device::kCUDA);
  *flat = Tensor::empty({N * K}, DType::kI32, Device::kCUDA);
  cuda::moe_route_topk(elem_type(dt), N, E, K, groups, topk_group, sc.raw_data(), bc.raw_data(),
                       ids.data<int32_t>(), flat->data<int32_t>());
  return ids;
}

void sort_by_expert(const Tensor& ids, int64_t E, Tensor* token, Tensor* position,
                    Tensor* offsets) {
  const int64_t N = ids.size(0), K = ids.size(1), S = N * K;
  const Tensor ic = on_gpu(ids, DType::kI32);
  *token = Tensor::empty({S}, DType::kI32, Device::kCUDA);
  *position = Tensor::empty({S}, DType::kI32, Device::kCUDA);
  *offsets = Tensor::empty({E + 1}, DType::kI64, Device::kCUDA);
  Tensor counts = Tensor::empty({E}, DType::kI64, Device::kCUDA);
  cuda::moe_sort_by_expert(N, K, E, ic.data<int32_t>(), token->data<int32_t>(),
                           position->data<int32_t>(), offsets->data<int64_t>(),
                           counts.data<int64_t>());
}

}  // namespace

void register_cuda_moe_kernels() {
  KernelTable<MoeKernels>::set(Device::kCUDA, {grouped_matmul, grouped_matmul_backward, gather_rows,
                                               gather_rows_backward, route_topk, sort_by_expert});
}

}  // namespace kimi
