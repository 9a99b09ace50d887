#include "core/cuda/runtime/cuda_tensor.h"

namespace kimi {

cuda::StridedView cuda_view(const Tensor& t) {
  KIMI_CHECK(t.dim() <= cuda::kMaxDims, "CUDA: rank {} > {} ({})", t.dim(), cuda::kMaxDims,
             t.str());
  cuda::StridedView v;
  v.data = t.raw_data();
  v.type = elem_type(t.dtype());
  v.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = t.shape()[d];
    v.strides[d] = t.strides()[d];
  }
  return v;
}

void check_cuda_float(DType d, const char* op) {
  KIMI_CHECK(d == DType::kF32 || d == DType::kF64 || d == DType::kBF16,
             "{}: unsupported dtype {} on CUDA (want F32, F64 or BF16)", op, dtype_name(d));
}

}  // namespace kimi
